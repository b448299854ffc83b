//! Max and average 2-D pooling over NCHW arrays with PyTorch's semantics (ceil_mode = false,
//! average pooling counts padded zeros): the geometry, its checks and the textbook loops.
use crate::{from_f64, tap, Element};

/// Input `[batch, channels, in_h, in_w]`, output `[batch, channels, out_h(), out_w()]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    /// Number of images.
    pub batch: usize,
    /// Channels, pooled independently.
    pub channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between neighbouring windows.
    pub stride: (usize, usize),
    /// Implicit border on each side (never the max; a zero for the average).
    pub padding: (usize, usize),
}

impl Pool2dGeometry {
    /// Output height, `(in_h + 2*pad - kh) / stride + 1` (rounded down).
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1
    }
    /// Output width, the same formula along the width.
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1
    }
    /// Checks the sizes are consistent; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        let sizes = [s.batch, s.channels, s.in_h, s.in_w, s.kernel.0, s.kernel.1];
        if sizes.contains(&0) || s.stride.0 == 0 || s.stride.1 == 0 {
            return Err(format!(
                "pool2d: sizes must be non-zero, got batch {}, channels {}, input {}x{}, \
                 kernel {}x{}, stride {}x{}",
                s.batch, s.channels, s.in_h, s.in_w, s.kernel.0, s.kernel.1, s.stride.0, s.stride.1
            ));
        }
        let dims = [
            ("height", s.in_h, s.padding.0, s.kernel.0),
            ("width", s.in_w, s.padding.1, s.kernel.1),
        ];
        for (name, input, pad, k) in dims {
            // PyTorch's rule; it also guarantees every window holds at least one real pixel.
            if pad > k / 2 {
                return Err(format!(
                    "pool2d: padding {name} {pad} must be at most half the kernel {name} {k}"
                ));
            }
            if k > input + 2 * pad {
                return Err(format!(
                    "pool2d: kernel {name} {k} is larger than the padded input {name} {} \
                     ({input} + 2 * padding {pad})",
                    input + 2 * pad
                ));
            }
        }
        if s.in_h * s.in_w > u32::MAX as usize {
            return Err(format!(
                "pool2d: input plane {}x{} is too large for u32 argmax indices",
                s.in_h, s.in_w
            ));
        }
        Ok(())
    }
}

/// Calls `f(plane, out_index, in_index_within_plane)` for each valid (non-padding) input pixel of
/// each pooling window, in row-major window order.
fn pool_walk(g: &Pool2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (ho, wo) = (g.out_h(), g.out_w());
    for p in 0..g.batch * g.channels {
        for oh in 0..ho {
            for ow in 0..wo {
                let yi = (p * ho + oh) * wo + ow;
                for kh in 0..g.kernel.0 {
                    let Some(ih) = tap(oh, kh, g.stride.0, g.padding.0, 1, g.in_h) else {
                        continue;
                    };
                    for kw in 0..g.kernel.1 {
                        let Some(iw) = tap(ow, kw, g.stride.1, g.padding.1, 1, g.in_w) else {
                            continue;
                        };
                        f(p, yi, ih * g.in_w + iw);
                    }
                }
            }
        }
    }
}

/// Max over each window (padding never wins); argmax is `h * in_w + w` in the input plane, the
/// first maximum in row-major order, and a NaN counts as larger than everything.
pub fn max_pool2d_forward<T: Element>(g: &Pool2dGeometry, x: &[T]) -> (Vec<T>, Vec<u32>) {
    let len = g.batch * g.channels * g.out_h() * g.out_w();
    let plane = g.in_h * g.in_w;
    let mut y = vec![f64::NEG_INFINITY; len];
    let mut arg: Vec<Option<u32>> = vec![None; len];
    pool_walk(g, |p, yi, i| {
        let v = x[p * plane + i].to_f64();
        if arg[yi].is_none() || v > y[yi] || (v.is_nan() && !y[yi].is_nan()) {
            y[yi] = v;
            arg[yi] = Some(i as u32);
        }
    });
    let arg = arg
        .into_iter()
        .map(|a| a.expect("every window holds an input pixel"))
        .collect();
    (from_f64(y), arg)
}

/// `dx[argmax] += dy`, over every window.
pub fn max_pool2d_backward<T: Element>(g: &Pool2dGeometry, argmax: &[u32], dy: &[T]) -> Vec<T> {
    let plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let mut dx = vec![0.0; g.batch * g.channels * plane];
    for (yi, (&a, &d)) in argmax.iter().zip(dy).enumerate() {
        dx[(yi / out_plane) * plane + a as usize] += d.to_f64();
    }
    from_f64(dx)
}

/// Mean over each window, padded zeros included (divides by kernel area always).
pub fn avg_pool2d_forward<T: Element>(g: &Pool2dGeometry, x: &[T]) -> Vec<T> {
    let plane = g.in_h * g.in_w;
    let area = (g.kernel.0 * g.kernel.1) as f64;
    let mut y = vec![0.0; g.batch * g.channels * g.out_h() * g.out_w()];
    pool_walk(g, |p, yi, i| y[yi] += x[p * plane + i].to_f64());
    from_f64(y.into_iter().map(|v| v / area).collect())
}

/// Each window's gradient, divided by the kernel area, added to every real pixel of the window.
pub fn avg_pool2d_backward<T: Element>(g: &Pool2dGeometry, dy: &[T]) -> Vec<T> {
    let plane = g.in_h * g.in_w;
    let area = (g.kernel.0 * g.kernel.1) as f64;
    let mut dx = vec![0.0; g.batch * g.channels * plane];
    pool_walk(g, |p, yi, i| dx[p * plane + i] += dy[yi].to_f64() / area);
    from_f64(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// avg backward is the adjoint of avg forward: <avg(x), dy> = <x, avg_backward(dy)>.
    #[test]
    fn reference_avg_backward_is_adjoint() {
        let mut rng = StdRng::seed_from_u64(9);
        for g in crate::cases::pool2d_cases() {
            let x: Vec<f64> = (0..g.batch * g.channels * g.in_h * g.in_w)
                .map(|_| rng.random())
                .collect();
            let dy: Vec<f64> = (0..g.batch * g.channels * g.out_h() * g.out_w())
                .map(|_| rng.random())
                .collect();
            let y = avg_pool2d_forward(&g, &x);
            let dx = avg_pool2d_backward(&g, &dy);
            let lhs: f64 = y.iter().zip(&dy).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0), "{g:?}");
        }
    }

    #[test]
    fn validate_rejects_bad_geometry() {
        let ok = crate::cases::pool2d_geometry((2, 3, 8, 8), (3, 3), (2, 2), (1, 1));
        assert!(ok.validate().is_ok());
        let e = Pool2dGeometry {
            padding: (2, 1),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(
            e.contains("padding height 2") && e.contains("kernel height 3"),
            "{e}"
        );
        let e = Pool2dGeometry {
            kernel: (3, 11),
            padding: (0, 0),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("kernel width 11") && e.contains("8"), "{e}");
        assert!(Pool2dGeometry {
            stride: (0, 1),
            ..ok
        }
        .validate()
        .is_err());
        assert!(Pool2dGeometry { channels: 0, ..ok }.validate().is_err());
        assert!(Pool2dGeometry {
            kernel: (0, 3),
            ..ok
        }
        .validate()
        .is_err());
    }
}
