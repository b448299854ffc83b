//! k independent dense layers over k groups of features, in one op (the SaE module's
//! aggregated dense layer; one group with a shared input is an ordinary linear layer).
use crate::{from_f64, Element};

/// Sizes of a grouped dense layer: weight `[groups, out, in]`, bias `[groups * out]`, output
/// `[batch, groups * out]`; the input is `[batch, in]` or `[batch, groups * in]`
/// (see [`shared_input`](Self::shared_input)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupedLinearShape {
    /// Rows of the input and output.
    pub batch: usize,
    /// Independent dense layers.
    pub groups: usize,
    /// Input features per group.
    pub in_features: usize,
    /// Output features per group.
    pub out_features: usize,
    /// true: input `[batch, in]` fed to every group; false: input `[batch, groups*in]`.
    pub shared_input: bool,
}

impl GroupedLinearShape {
    /// Length of an input row: `in` when shared, `groups * in` otherwise.
    pub fn x_row(&self) -> usize {
        if self.shared_input {
            self.in_features
        } else {
            self.groups * self.in_features
        }
    }
    /// Length of an output row, `groups * out`.
    pub fn y_row(&self) -> usize {
        self.groups * self.out_features
    }
    /// Column where group `g`'s input starts.
    pub fn x_col(&self, g: usize) -> usize {
        if self.shared_input {
            0
        } else {
            g * self.in_features
        }
    }
}

/// Index into x of feature `i` of group `grp` for batch row `b`.
fn gl_x(s: GroupedLinearShape, b: usize, grp: usize, i: usize) -> usize {
    if s.shared_input {
        b * s.in_features + i
    } else {
        (b * s.groups + grp) * s.in_features + i
    }
}

/// `y[b, g*out + o] = bias[g, o] + sum_i x_g[b, i] * w[g, o, i]`.
pub fn grouped_linear_forward<T: Element>(
    s: GroupedLinearShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let mut y = vec![0.0; s.batch * k * fo];
    for b in 0..s.batch {
        for grp in 0..k {
            for o in 0..fo {
                let mut acc = bias.map_or(0.0, |bs| bs[grp * fo + o].to_f64());
                for i in 0..fi {
                    acc += x[gl_x(s, b, grp, i)].to_f64() * w[(grp * fo + o) * fi + i].to_f64();
                }
                y[(b * k + grp) * fo + o] = acc;
            }
        }
    }
    from_f64(y)
}

/// Returns (dx, dw, db); dx sums over groups when the input is shared, db is empty when
/// `with_bias` is false.
pub fn grouped_linear_backward<T: Element>(
    s: GroupedLinearShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    with_bias: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; k * fo * fi];
    let mut db = vec![0.0; if with_bias { k * fo } else { 0 }];
    for b in 0..s.batch {
        for grp in 0..k {
            for o in 0..fo {
                let d = dy[(b * k + grp) * fo + o].to_f64();
                if with_bias {
                    db[grp * fo + o] += d;
                }
                for i in 0..fi {
                    let (xi, wi) = (gl_x(s, b, grp, i), (grp * fo + o) * fi + i);
                    dx[xi] += d * w[wi].to_f64();
                    dw[wi] += d * x[xi].to_f64();
                }
            }
        }
    }
    (from_f64(dx), from_f64(dw), from_f64(db))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_vec;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// <forward(x) - b, dy> = <x, dx> = <w, dw>: the reference backward is the adjoint of the
    /// reference forward.
    #[test]
    fn reference_backward_is_adjoint_of_forward() {
        let mut rng = StdRng::seed_from_u64(4);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        for s in crate::cases::grouped_linear_cases() {
            let x = rand_vec::<f64>(&mut rng, s.batch * s.x_row(), -1.0, 1.0);
            let w = rand_vec::<f64>(
                &mut rng,
                s.groups * s.out_features * s.in_features,
                -1.0,
                1.0,
            );
            let dy = rand_vec::<f64>(&mut rng, s.batch * s.y_row(), -1.0, 1.0);
            let lhs = dot(&grouped_linear_forward(s, &x, &w, None), &dy);
            let (dx, dw, _) = grouped_linear_backward(s, &x, &w, &dy, false);
            assert!(
                (lhs - dot(&x, &dx)).abs() < 1e-9 * lhs.abs().max(1.0),
                "{s:?}"
            );
            assert!(
                (lhs - dot(&w, &dw)).abs() < 1e-9 * lhs.abs().max(1.0),
                "{s:?}"
            );
        }
    }
}
