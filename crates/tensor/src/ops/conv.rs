//! 2-D convolution (NCHW) with stride, padding, dilation and groups (groups = channels is a
//! depthwise convolution). Forward and both gradients are dedicated kernels.
use super::{check_rank, check_same, check_shape};
use crate::storage::with_dtype;
use crate::{Device, Error, Op, Result, Tensor};
use senet_cpu::conv2d as kernel;
use senet_gpu::conv2d as gpu;
use senet_spec::conv2d::Conv2dGeometry;

/// Options of `conv2d`; pairs are (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// Square stride and padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dOptions {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Default::default()
        }
    }
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = (dilation, dilation);
        self
    }
}

impl Tensor {
    /// Convolves `self` `[N, Cin, H, W]` with `weight` `[Cout, Cin/groups, kh, kw]`, plus an
    /// optional `bias` `[Cout]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        check_rank(OP, "input", self, 4)?;
        check_rank(OP, "weight", weight, 4)?;
        check_same(OP, self, weight)?;
        let (x, w) = (self.shape(), weight.shape());
        if opts.groups == 0 || x[1] % opts.groups != 0 || w[0] % opts.groups != 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "groups {} must divide the input channels ({}) and the output channels ({})",
                    opts.groups, x[1], w[0]
                ),
            ));
        }
        if w[1] * opts.groups != x[1] {
            return Err(Error::shape(OP, format!("weight {w:?} expects {} input channels ({} per group x {} groups), the input {x:?} has {}", w[1] * opts.groups, w[1], opts.groups, x[1])));
        }
        if let Some(b) = bias {
            check_same(OP, self, b)?;
            check_shape(OP, "bias", b, &[w[0]])?;
        }
        let geometry = Conv2dGeometry {
            batch: x[0],
            in_channels: x[1],
            in_h: x[2],
            in_w: x[3],
            out_channels: w[0],
            kernel: (w[2], w[3]),
            stride: opts.stride,
            padding: opts.padding,
            dilation: opts.dilation,
            groups: opts.groups,
        };
        geometry.validate().map_err(|m| {
            Error::shape(
                OP,
                format!(
                    "input {x:?}, weight {w:?}: {}",
                    m.trim_start_matches("conv2d: ")
                ),
            )
        })?;
        let out_shape = [x[0], w[0], geometry.out_h(), geometry.out_w()];
        let (xc, wc) = (self.contiguous_detached()?, weight.contiguous_detached()?);
        let bc = bias.map(|b| b.contiguous_detached()).transpose()?;
        let record = Op::Conv2d {
            input: self.clone(),
            weight: weight.clone(),
            bias: bias.cloned(),
            geometry,
        };
        if self.device() != Device::Cpu {
            let b = bc.as_ref().map(|b| b.gpu_buf()).transpose()?;
            let out = gpu::forward(&geometry, xc.gpu_buf()?, wc.gpu_buf()?, b)?;
            return Ok(Tensor::from_gpu(out, &out_shape, Some(record)));
        }
        with_dtype!(self.dtype(), T => {
            let b = bc.as_ref().map(|b| b.cpu_slice::<T>()).transpose()?;
            let out = kernel::forward(&geometry, xc.cpu_slice::<T>()?, wc.cpu_slice::<T>()?, b);
            Ok(Tensor::from_cpu(out, &out_shape, Some(record)))
        })
    }
}

/// Gradients of conv2d: (input if `need_input`, weight, bias if `with_bias`). The input
/// gradient is skipped for a network's first layer, whose input is data.
pub(crate) fn conv2d_backward(
    input: &Tensor,
    weight: &Tensor,
    with_bias: bool,
    need_input: bool,
    g: &Conv2dGeometry,
    grad: &Tensor,
) -> Result<(Option<Tensor>, Tensor, Option<Tensor>)> {
    let (x, w, dy) = (
        input.contiguous_detached()?,
        weight.contiguous_detached()?,
        grad.contiguous_detached()?,
    );
    if input.device() != Device::Cpu {
        let dyb = dy.gpu_buf()?;
        let dx = match need_input {
            true => Some(Tensor::from_gpu(
                gpu::backward_input(g, w.gpu_buf()?, dyb)?,
                input.shape(),
                None,
            )),
            false => None,
        };
        let dw = Tensor::from_gpu(
            gpu::backward_weight(g, x.gpu_buf()?, dyb)?,
            weight.shape(),
            None,
        );
        let db = match with_bias {
            true => Some(Tensor::from_gpu(
                gpu::backward_bias(g, dyb)?,
                &[g.out_channels],
                None,
            )),
            false => None,
        };
        return Ok((dx, dw, db));
    }
    with_dtype!(input.dtype(), T => {
        let dys = dy.cpu_slice::<T>()?;
        let dx = if need_input { Some(Tensor::from_cpu(kernel::backward_input(g, w.cpu_slice::<T>()?, dys), input.shape(), None)) } else { None };
        let dw = kernel::backward_weight(g, x.cpu_slice::<T>()?, dys);
        let db = with_bias.then(|| Tensor::from_cpu(kernel::backward_bias(g, dys), &[g.out_channels], None));
        Ok((dx, Tensor::from_cpu(dw, weight.shape(), None), db))
    })
}
