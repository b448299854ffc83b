//! Max, average and global-average pooling over NCHW inputs.
use super::check_rank;
use crate::op::Indices;
use crate::storage::with_dtype;
use crate::{Device, Error, Op, Result, Tensor};
use senet_cpu::pool as kernel;
use senet_gpu::pool as gpu;
use senet_spec::pool::Pool2dGeometry;
use std::sync::Arc;

/// Window, stride and padding of a pooling op; pairs are (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Pool2dOptions {
    /// A square window of `kernel` with square stride and padding.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Pool2dOptions {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
        }
    }
}

impl Tensor {
    fn pool_geometry(&self, op: &'static str, o: Pool2dOptions) -> Result<Pool2dGeometry> {
        check_rank(op, "input", self, 4)?;
        let s = self.shape();
        let g = Pool2dGeometry {
            batch: s[0],
            channels: s[1],
            in_h: s[2],
            in_w: s[3],
            kernel: o.kernel,
            stride: o.stride,
            padding: o.padding,
        };
        g.validate().map_err(|m| {
            Error::shape(
                op,
                format!("input {s:?}: {}", m.trim_start_matches("pool2d: ")),
            )
        })?;
        Ok(g)
    }

    /// Max over each window (padding counts as minus infinity).
    pub fn max_pool2d(&self, opts: Pool2dOptions) -> Result<Tensor> {
        let g = self.pool_geometry("max_pool2d", opts)?;
        let x = self.contiguous_detached()?;
        let shape = [g.batch, g.channels, g.out_h(), g.out_w()];
        if self.device() != Device::Cpu {
            let (y, argmax) = gpu::max_forward(&g, x.gpu_buf()?)?;
            let record = Op::MaxPool2d {
                input: self.clone(),
                argmax: Indices::Gpu(Arc::new(argmax)),
                geometry: g,
            };
            return Ok(Tensor::from_gpu(y, &shape, Some(record)));
        }
        with_dtype!(self.dtype(), T => {
            let (y, argmax) = kernel::max_forward(&g, x.cpu_slice::<T>()?);
            Ok(Tensor::from_cpu(y, &shape, Some(Op::MaxPool2d { input: self.clone(), argmax: Indices::Cpu(Arc::from(argmax)), geometry: g })))
        })
    }

    /// Mean over each window; padded zeros count (PyTorch's `count_include_pad=True`).
    pub fn avg_pool2d(&self, opts: Pool2dOptions) -> Result<Tensor> {
        let g = self.pool_geometry("avg_pool2d", opts)?;
        let x = self.contiguous_detached()?;
        let shape = [g.batch, g.channels, g.out_h(), g.out_w()];
        if self.device() != Device::Cpu {
            let y = gpu::avg_forward(&g, x.gpu_buf()?)?;
            return Ok(Tensor::from_gpu(
                y,
                &shape,
                Some(Op::AvgPool2d {
                    input: self.clone(),
                    geometry: g,
                }),
            ));
        }
        with_dtype!(self.dtype(), T => {
            let y = kernel::avg_forward(&g, x.cpu_slice::<T>()?);
            Ok(Tensor::from_cpu(y, &shape, Some(Op::AvgPool2d { input: self.clone(), geometry: g })))
        })
    }

    /// Mean over H and W: `[N, C, H, W] -> [N, C]`.
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        check_rank("global_avg_pool2d", "input", self, 4)?;
        self.mean(&[2, 3], false)
    }
}

pub(crate) fn max_pool2d_backward(
    g: &Pool2dGeometry,
    argmax: &Indices,
    grad: &Tensor,
) -> Result<Tensor> {
    let dy = grad.contiguous_detached()?;
    let in_shape = [g.batch, g.channels, g.in_h, g.in_w];
    let argmax = match argmax {
        Indices::Gpu(idx) => {
            return Ok(Tensor::from_gpu(
                gpu::max_backward(g, idx, dy.gpu_buf()?)?,
                &in_shape,
                None,
            ))
        }
        Indices::Cpu(idx) => idx,
    };
    with_dtype!(grad.dtype(), T => {
        let dx = kernel::max_backward(g, argmax, dy.cpu_slice::<T>()?);
        Ok(Tensor::from_cpu(dx, &[g.batch, g.channels, g.in_h, g.in_w], None))
    })
}

pub(crate) fn avg_pool2d_backward(g: &Pool2dGeometry, grad: &Tensor) -> Result<Tensor> {
    let dy = grad.contiguous_detached()?;
    if grad.device() != Device::Cpu {
        let dx = gpu::avg_backward(g, dy.gpu_buf()?)?;
        return Ok(Tensor::from_gpu(
            dx,
            &[g.batch, g.channels, g.in_h, g.in_w],
            None,
        ));
    }
    with_dtype!(grad.dtype(), T => {
        let dx = kernel::avg_backward(g, dy.cpu_slice::<T>()?);
        Ok(Tensor::from_cpu(dx, &[g.batch, g.channels, g.in_h, g.in_w], None))
    })
}
