//! Max, average and global-average pooling over NCHW inputs. `senet_spec::pool` says what the
//! kernels compute; `senet_cpu::pool` and `shaders/pool.wgsl` compute it.
use super::check_rank;
use crate::kernel::{run, run_with, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::{CpuElement, Error, Indices, Op, Result, Tensor};
use senet_cpu::pool as cpu;
use senet_gpu::pool as gpu;
use senet_spec::pool::Pool2dGeometry;

/// The pooling kernels, each reading one contiguous argument.
enum Pool {
    /// `[x] -> y` and the argmax indices.
    MaxForward(Pool2dGeometry),
    /// `[dy]` and the argmax indices `-> dx`.
    MaxBackward(Pool2dGeometry),
    /// `[x] -> y`
    AvgForward(Pool2dGeometry),
    /// `[dy] -> dx`
    AvgBackward(Pool2dGeometry),
}

impl Kernel for Pool {
    const NAME: &'static str = "pool2d";
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        match self {
            Pool::MaxForward(g) => {
                let (y, argmax) = cpu::max_forward(g, x.get(0));
                CpuOut::one(y).with_index(argmax)
            }
            Pool::MaxBackward(g) => CpuOut::one(cpu::max_backward(g, x.index(0), x.get(0))),
            Pool::AvgForward(g) => CpuOut::one(cpu::avg_forward(g, x.get(0))),
            Pool::AvgBackward(g) => CpuOut::one(cpu::avg_backward(g, x.get(0))),
        }
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        Ok(match self {
            Pool::MaxForward(g) => {
                let (y, argmax) = gpu::max_forward(g, x.get(0))?;
                GpuOut::one(y).with_index(argmax)
            }
            Pool::MaxBackward(g) => GpuOut::one(gpu::max_backward(g, x.index(0), x.get(0))?),
            Pool::AvgForward(g) => GpuOut::one(gpu::avg_forward(g, x.get(0))?),
            Pool::AvgBackward(g) => GpuOut::one(gpu::avg_backward(g, x.get(0))?),
        })
    }
    fn profile(&self) -> (String, Option<f64>) {
        let (what, g) = match self {
            Pool::MaxForward(g) => ("max_pool2d", g),
            Pool::MaxBackward(g) => ("max_pool2d dx", g),
            Pool::AvgForward(g) => ("avg_pool2d", g),
            Pool::AvgBackward(g) => ("avg_pool2d dx", g),
        };
        let label = format!(
            "{what} {}x{}/{} {}ch {}x{}",
            g.kernel.0, g.kernel.1, g.stride.0, g.channels, g.in_h, g.in_w
        );
        (label, None)
    }
}

/// Window, stride and padding of a pooling op; pairs are (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between neighbouring windows (usually the window size, for no overlap).
    pub stride: (usize, usize),
    /// Border added on each side; at most half the window (PyTorch's rule).
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
    ///
    /// Shape rule (shared with [`avg_pool2d`](Self::avg_pool2d)): `[N, C, H, W] ->
    /// [N, C, Ho, Wo]` with `Ho = (H + 2*padding - kernel) / stride + 1`, rounded down
    /// (PyTorch's `ceil_mode = false`). The padding may be at most half the window, and the
    /// window must fit in the padded input.
    ///
    /// ```
    /// # use senet_tensor::{Pool2dOptions, Tensor};
    /// let x = Tensor::ones(&[2, 8, 32, 32]);
    /// let y = x.max_pool2d(Pool2dOptions::new(2, 2, 0))?;
    /// assert_eq!(y.shape(), &[2, 8, 16, 16]);
    /// // 3x3 windows, stride 2, padding 1: (32 + 2 - 3) / 2 + 1 = 16.
    /// assert_eq!(x.max_pool2d(Pool2dOptions::new(3, 2, 1))?.shape(), &[2, 8, 16, 16]);
    /// // Padding 2 is more than half of a 3-wide window.
    /// assert!(x.max_pool2d(Pool2dOptions::new(3, 1, 2)).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn max_pool2d(&self, opts: Pool2dOptions) -> Result<Tensor> {
        let g = self.pool_geometry("max_pool2d", opts)?;
        let x = self.contiguous_detached()?;
        let mut out = run(&Pool::MaxForward(g), &[&x])?;
        let shape = [g.batch, g.channels, g.out_h(), g.out_w()];
        let record = Op::MaxPool2d {
            input: self.clone(),
            argmax: out.indices(),
            geometry: g,
        };
        Ok(out.tensor(&shape, Some(record)))
    }

    /// Mean over each window; padded zeros count (PyTorch's `count_include_pad=True`).
    /// Shapes as in [`max_pool2d`](Self::max_pool2d).
    ///
    /// ```
    /// # use senet_tensor::{Pool2dOptions, Tensor};
    /// let x = Tensor::ones(&[1, 3, 7, 7]);
    /// let y = x.avg_pool2d(Pool2dOptions::new(2, 2, 0))?; // (7 - 2) / 2 + 1 = 3
    /// assert_eq!(y.shape(), &[1, 3, 3, 3]);
    /// assert_eq!(y.to_vec_f32()?, [1.0; 27]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn avg_pool2d(&self, opts: Pool2dOptions) -> Result<Tensor> {
        let g = self.pool_geometry("avg_pool2d", opts)?;
        let x = self.contiguous_detached()?;
        let shape = [g.batch, g.channels, g.out_h(), g.out_w()];
        let record = Op::AvgPool2d {
            input: self.clone(),
            geometry: g,
        };
        Ok(run(&Pool::AvgForward(g), &[&x])?.tensor(&shape, Some(record)))
    }

    /// Mean over H and W: `[N, C, H, W] -> [N, C]`, one number per channel (the "squeeze"
    /// of squeeze-and-excitation, and the step before a classifier's last linear layer).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[2, 64, 8, 8]).global_avg_pool2d()?;
    /// assert_eq!(y.shape(), &[2, 64]);
    /// assert!(Tensor::ones(&[2, 64]).global_avg_pool2d().is_err()); // needs 4 axes
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
    Ok(run_with(&Pool::MaxBackward(*g), &[Some(&dy)], &[argmax])?.tensor(&in_shape, None))
}

pub(crate) fn avg_pool2d_backward(g: &Pool2dGeometry, grad: &Tensor) -> Result<Tensor> {
    let dy = grad.contiguous_detached()?;
    let in_shape = [g.batch, g.channels, g.in_h, g.in_w];
    Ok(run(&Pool::AvgBackward(*g), &[&dy])?.tensor(&in_shape, None))
}
