//! 2-D convolution over NCHW arrays with stride, padding, dilation and groups: its geometry,
//! the checks that make a geometry valid, and the textbook loops of the forward pass and its
//! three gradients.
use crate::{from_f64, tap, to_f64, Element};

/// Every size a 2-D convolution needs. Input `[batch, in_channels, in_h, in_w]`, weight
/// `[out_channels, in_channels / groups, kernel_h, kernel_w]`, output
/// `[batch, out_channels, out_h(), out_w()]`. Pairs are (height, width).
///
/// ```
/// use senet_spec::cases::conv2d_geometry;
/// // batch 2, 3 -> 16 channels over 32x32; 3x3 kernel, stride 2, padding 1, dilation 1, 1 group.
/// let g = conv2d_geometry((2, 3, 32, 32, 16), (3, 3), (2, 2), (1, 1), (1, 1), 1);
/// assert!(g.validate().is_ok());
/// assert_eq!((g.out_h(), g.out_w()), (16, 16)); // (32 + 2 - 2 - 1) / 2 + 1
/// assert_eq!(g.weight_len(), 16 * 3 * 3 * 3);
/// // 2 groups cannot split 3 input channels.
/// let bad = senet_spec::conv2d::Conv2dGeometry { groups: 2, ..g };
/// assert!(bad.validate().unwrap_err().contains("groups 2"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Number of images.
    pub batch: usize,
    /// Channels of the input.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Channels of the output (number of filters).
    pub out_channels: usize,
    /// Kernel (filter) size.
    pub kernel: (usize, usize),
    /// Step between neighbouring windows.
    pub stride: (usize, usize),
    /// Zeros added on each side of the input.
    pub padding: (usize, usize),
    /// Spacing between kernel taps (1 = adjacent pixels).
    pub dilation: (usize, usize),
    /// Channel groups: each output channel sees only `in_channels / groups` inputs.
    pub groups: usize,
}

impl Conv2dGeometry {
    /// Output height, `(in_h + 2*pad - dilation*(kh - 1) - 1) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.padding.0 - self.dilation.0 * (self.kernel.0 - 1) - 1) / self.stride.0
            + 1
    }
    /// Output width, the same formula as [`out_h`](Self::out_h) along the width.
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.padding.1 - self.dilation.1 * (self.kernel.1 - 1) - 1) / self.stride.1
            + 1
    }
    /// Multiply-adds of the forward pass; each gradient (input, weight) costs as many.
    pub fn macs(&self) -> f64 {
        let per_output = (self.in_channels / self.groups.max(1)) * self.kernel.0 * self.kernel.1;
        (self.batch * self.out_channels * self.out_h() * self.out_w() * per_output) as f64
    }
    /// The geometry in a few characters for profiles: kernel/stride, groups when not 1,
    /// channels in->out at the input size, `3x3/1 64->64 8x8`.
    pub fn describe(&self) -> String {
        let groups = if self.groups == 1 {
            String::new()
        } else {
            format!(" g{}", self.groups)
        };
        format!(
            "{}x{}/{}{groups} {}->{} {}x{}",
            self.kernel.0,
            self.kernel.1,
            self.stride.0,
            self.in_channels,
            self.out_channels,
            self.in_h,
            self.in_w
        )
    }
    /// Number of elements of the weight, `out_channels * in_channels / groups * kh * kw`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * (self.in_channels / self.groups) * self.kernel.0 * self.kernel.1
    }

    /// Checks the sizes are consistent; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if [
            s.batch,
            s.in_channels,
            s.in_h,
            s.in_w,
            s.out_channels,
            s.kernel.0,
            s.kernel.1,
        ]
        .contains(&0)
        {
            return Err(format!(
                "conv2d: sizes must be non-zero, got batch {}, in_channels {}, input {}x{}, \
                 out_channels {}, kernel {}x{}",
                s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.kernel.0, s.kernel.1
            ));
        }
        if s.stride.0 == 0 || s.stride.1 == 0 || s.dilation.0 == 0 || s.dilation.1 == 0 {
            return Err(format!(
                "conv2d: stride and dilation must be non-zero, got stride {:?}, dilation {:?}",
                s.stride, s.dilation
            ));
        }
        if s.groups == 0
            || !s.in_channels.is_multiple_of(s.groups)
            || !s.out_channels.is_multiple_of(s.groups)
        {
            return Err(format!(
                "conv2d: groups {} must divide in_channels {} and out_channels {}",
                s.groups, s.in_channels, s.out_channels
            ));
        }
        let dims = [
            ("height", s.in_h, s.padding.0, s.kernel.0, s.dilation.0),
            ("width", s.in_w, s.padding.1, s.kernel.1, s.dilation.1),
        ];
        for (name, input, pad, k, dil) in dims {
            // Checked here because out_h()/out_w() would underflow.
            let span = dil * (k - 1) + 1;
            if span > input + 2 * pad {
                return Err(format!(
                    "conv2d: kernel {name} {k} with dilation {dil} spans {span}, more than the \
                     padded input {name} {} ({input} + 2 * padding {pad})",
                    input + 2 * pad
                ));
            }
        }
        Ok(())
    }
}

/// Calls `f(x_index, w_index, y_index)` for every (input pixel, weight, output pixel) triple
/// that a convolution multiplies together; all four conv loops below are this one walk.
fn conv_walk(g: &Conv2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let cin_g = g.in_channels / g.groups;
    let cout_g = g.out_channels / g.groups;
    for n in 0..g.batch {
        for co in 0..g.out_channels {
            let grp = co / cout_g;
            for oh in 0..ho {
                for ow in 0..wo {
                    let yi = ((n * g.out_channels + co) * ho + oh) * wo + ow;
                    for cl in 0..cin_g {
                        let ci = grp * cin_g + cl;
                        for kh in 0..g.kernel.0 {
                            let Some(ih) =
                                tap(oh, kh, g.stride.0, g.padding.0, g.dilation.0, g.in_h)
                            else {
                                continue;
                            };
                            for kw in 0..g.kernel.1 {
                                let Some(iw) =
                                    tap(ow, kw, g.stride.1, g.padding.1, g.dilation.1, g.in_w)
                                else {
                                    continue;
                                };
                                let xi = ((n * g.in_channels + ci) * g.in_h + ih) * g.in_w + iw;
                                let wi = ((co * cin_g + cl) * g.kernel.0 + kh) * g.kernel.1 + kw;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[n, co, oh, ow] = bias[co] + sum over (ci in co's group, kh, kw) of x * w`.
pub fn conv2d_forward<T: Element>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (x, w) = (to_f64(x), to_f64(w));
    let plane = g.out_h() * g.out_w();
    let mut y = vec![0.0; g.batch * g.out_channels * plane];
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / plane) % g.out_channels].to_f64();
        }
    }
    conv_walk(g, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    from_f64(y)
}

/// dx: each output gradient scattered back through every weight to the pixel it read.
pub fn conv2d_backward_input<T: Element>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    let (w, dy) = (to_f64(w), to_f64(dy));
    let mut dx = vec![0.0; g.batch * g.in_channels * g.in_h * g.in_w];
    conv_walk(g, |xi, wi, yi| dx[xi] += w[wi] * dy[yi]);
    from_f64(dx)
}

/// dw: every (pixel, output gradient) pair a weight multiplied, summed over the batch.
pub fn conv2d_backward_weight<T: Element>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (x, dy) = (to_f64(x), to_f64(dy));
    let cin_g = g.in_channels / g.groups;
    let mut dw = vec![0.0; g.out_channels * cin_g * g.kernel.0 * g.kernel.1];
    conv_walk(g, |xi, wi, yi| dw[wi] += x[xi] * dy[yi]);
    from_f64(dw)
}

/// `dbias[co]` = sum of `dy` over batch and positions.
pub fn conv2d_backward_bias<T: Element>(g: &Conv2dGeometry, dy: &[T]) -> Vec<T> {
    let plane = g.out_h() * g.out_w();
    let mut db = vec![0.0; g.out_channels];
    for (i, &v) in dy.iter().enumerate() {
        db[(i / plane) % g.out_channels] += v.to_f64();
    }
    from_f64(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_vec;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The reference backward loops are the adjoints of the reference forward:
    /// <conv(x, w), dy> = <x, dx(dy)> = <w, dw(x, dy)>. Checks the ground truth itself.
    #[test]
    fn reference_backward_is_adjoint_of_forward() {
        let mut rng = StdRng::seed_from_u64(3);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        for g in crate::cases::conv2d_cases() {
            let x = rand_vec::<f64>(
                &mut rng,
                g.batch * g.in_channels * g.in_h * g.in_w,
                -1.0,
                1.0,
            );
            let w = rand_vec::<f64>(&mut rng, g.weight_len(), -1.0, 1.0);
            let dy = rand_vec::<f64>(
                &mut rng,
                g.batch * g.out_channels * g.out_h() * g.out_w(),
                -1.0,
                1.0,
            );
            let y = conv2d_forward(&g, &x, &w, None);
            let lhs = dot(&y, &dy);
            let via_x = dot(&x, &conv2d_backward_input(&g, &w, &dy));
            let via_w = dot(&w, &conv2d_backward_weight(&g, &x, &dy));
            assert!((lhs - via_x).abs() < 1e-9 * lhs.abs().max(1.0), "{g:?}");
            assert!((lhs - via_w).abs() < 1e-9 * lhs.abs().max(1.0), "{g:?}");
        }
    }

    #[test]
    fn validate_rejects_bad_geometry() {
        let ok = crate::cases::conv2d_geometry((2, 4, 8, 8, 6), (3, 3), (1, 1), (1, 1), (1, 1), 2);
        assert!(ok.validate().is_ok());
        let e = Conv2dGeometry { groups: 3, ..ok }.validate().unwrap_err();
        assert!(e.contains("groups 3") && e.contains("in_channels 4"), "{e}");
        let e = Conv2dGeometry {
            out_channels: 5,
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("out_channels 5"), "{e}");
        assert!(Conv2dGeometry { groups: 0, ..ok }.validate().is_err());
        assert!(Conv2dGeometry { batch: 0, ..ok }.validate().is_err());
        assert!(Conv2dGeometry {
            kernel: (0, 3),
            ..ok
        }
        .validate()
        .is_err());
        assert!(Conv2dGeometry {
            stride: (1, 0),
            ..ok
        }
        .validate()
        .is_err());
        assert!(Conv2dGeometry {
            dilation: (0, 1),
            ..ok
        }
        .validate()
        .is_err());
        // 3x3 at dilation 5 spans 11 > 8 + 2.
        let e = Conv2dGeometry {
            dilation: (5, 1),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("spans 11") && e.contains("10"), "{e}");
        let e = Conv2dGeometry {
            kernel: (3, 11),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("width"), "{e}");
        // Exactly fitting is fine: out size 1.
        let fit = Conv2dGeometry {
            kernel: (10, 10),
            ..ok
        };
        assert!(fit.validate().is_ok());
        assert_eq!((fit.out_h(), fit.out_w()), (1, 1));
    }
}
