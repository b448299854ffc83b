//! 2-D convolution (NCHW) with stride, padding, dilation and groups (groups = channels is a
//! depthwise convolution). The forward pass and the three gradients are dedicated kernels:
//! `senet_spec::conv2d` says what they compute, `senet_cpu::conv2d` and
//! `shaders/conv2d*.wgsl` compute it.
use super::{check_rank, check_same, check_shape};
use crate::kernel::{run, run_with, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::{CpuElement, Error, Op, Result, Tensor};
use senet_cpu::conv2d as cpu;
use senet_gpu::conv2d as gpu;
use senet_spec::conv2d::Conv2dGeometry;

/// The conv2d kernels, each reading contiguous arguments in the order listed.
enum Conv {
    /// `[x, weight, bias?] -> y`
    Forward(Conv2dGeometry),
    /// `[weight, dy] -> dx`
    Input(Conv2dGeometry),
    /// `[x, dy] -> dweight`
    Weight(Conv2dGeometry),
    /// `[dy] -> dbias`
    Bias(Conv2dGeometry),
}

impl Kernel for Conv {
    const NAME: &'static str = "conv2d";
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        CpuOut::one(match self {
            Conv::Forward(g) => cpu::forward(g, x.get(0), x.get(1), x.opt(2)),
            Conv::Input(g) => cpu::backward_input(g, x.get(0), x.get(1)),
            Conv::Weight(g) => cpu::backward_weight(g, x.get(0), x.get(1)),
            Conv::Bias(g) => cpu::backward_bias(g, x.get(0)),
        })
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        Ok(GpuOut::one(match self {
            Conv::Forward(g) => gpu::forward(g, x.get(0), x.get(1), x.opt(2))?,
            Conv::Input(g) => gpu::backward_input(g, x.get(0), x.get(1))?,
            Conv::Weight(g) => gpu::backward_weight(g, x.get(0), x.get(1))?,
            Conv::Bias(g) => gpu::backward_bias(g, x.get(0))?,
        }))
    }
    fn profile(&self) -> (String, Option<f64>) {
        let (what, g) = match self {
            Conv::Forward(g) => ("conv2d", g),
            Conv::Input(g) => ("conv2d dx", g),
            Conv::Weight(g) => ("conv2d dw", g),
            Conv::Bias(g) => return (format!("conv2d dbias {}", g.describe()), None),
        };
        (format!("{what} {}", g.describe()), Some(2.0 * g.macs()))
    }
}

/// Options of `conv2d`; pairs are (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between neighbouring windows; 2 halves the output size.
    pub stride: (usize, usize),
    /// Zeros added on each side of the input; `(k - 1) / 2` keeps the size at stride 1.
    pub padding: (usize, usize),
    /// Spacing between kernel taps: 2 makes a 3x3 kernel see a 5x5 area.
    pub dilation: (usize, usize),
    /// Channel groups: each output channel reads `in_channels / groups` inputs (1 is a plain
    /// convolution, `in_channels` a depthwise one).
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
    /// These options with `groups` channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// These options with the same dilation along both axes.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = (dilation, dilation);
        self
    }
}

impl Tensor {
    /// Convolves `self` `[N, Cin, H, W]` with `weight` `[Cout, Cin/groups, kh, kw]`, plus an
    /// optional `bias` `[Cout]`.
    ///
    /// The output is `[N, Cout, Ho, Wo]` with, along each axis (PyTorch's rule),
    /// `Ho = (H + 2*padding - dilation*(kh - 1) - 1) / stride + 1`, rounded down. `groups`
    /// must divide `Cin` and `Cout`, and the dilated kernel must fit in the padded input.
    ///
    /// ```
    /// # use senet_tensor::{Conv2dOptions, Tensor};
    /// let x = Tensor::ones(&[2, 3, 32, 32]);
    /// let w = Tensor::zeros(&[16, 3, 3, 3]);
    /// // 3x3, stride 1, padding 1: the size is kept.
    /// let y = x.conv2d(&w, None, Conv2dOptions::new(1, 1))?;
    /// assert_eq!(y.shape(), &[2, 16, 32, 32]);
    /// // Stride 2 halves it: (32 + 2 - 2 - 1) / 2 + 1 = 16.
    /// let y = x.conv2d(&w, Some(&Tensor::zeros(&[16])), Conv2dOptions::new(2, 1))?;
    /// assert_eq!(y.shape(), &[2, 16, 16, 16]);
    /// // Depthwise: 3 groups of one channel, weight [Cout, 1, kh, kw].
    /// let dw = Tensor::zeros(&[3, 1, 3, 3]);
    /// let y = x.conv2d(&dw, None, Conv2dOptions::new(1, 0).groups(3))?;
    /// assert_eq!(y.shape(), &[2, 3, 30, 30]);
    /// // A weight for 4 input channels does not fit a 3-channel input.
    /// let err = x.conv2d(&Tensor::zeros(&[16, 4, 3, 3]), None, Conv2dOptions::default());
    /// assert!(err.unwrap_err().to_string().contains("expects 4 input channels"));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
        let args = [Some(&xc), Some(&wc), bc.as_ref()];
        Ok(run_with(&Conv::Forward(geometry), &args, &[])?.tensor(&out_shape, Some(record)))
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
    let grad_of = |kernel: Conv, args: &[&Tensor], shape: &[usize]| -> Result<Tensor> {
        Ok(run(&kernel, args)?.tensor(shape, None))
    };
    let dx = need_input
        .then(|| grad_of(Conv::Input(*g), &[&w, &dy], input.shape()))
        .transpose()?;
    let dw = grad_of(Conv::Weight(*g), &[&x, &dy], weight.shape())?;
    let db = with_bias
        .then(|| grad_of(Conv::Bias(*g), &[&dy], &[g.out_channels]))
        .transpose()?;
    Ok((dx, dw, db))
}
