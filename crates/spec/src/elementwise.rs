//! What the elementwise ops compute: the unary and binary functions themselves (every backend
//! applies these formulas, the WGSL kernels in `shaders/elementwise.wgsl` restate them), and
//! naive broadcasting and permutation loops to test strided kernels against.
use crate::Element;

/// Unary ops. Each is one formula, [`UnaryOp::apply`]; `shaders/elementwise.wgsl` restates it
/// in the `case` numbered by the op's place in [`UnaryOp::ALL`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// Natural logarithm, `ln x`.
    Log,
    /// Square root.
    Sqrt,
    /// `x^p`
    Powf(f64),
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e^-x)`, squashes to (0, 1).
    Sigmoid,
    /// Hyperbolic tangent, squashes to (-1, 1).
    Tanh,
    /// `x * c`
    Scale(f64),
    /// `x + c`
    AddScalar(f64),
    /// 1 where x > 0, else 0 (the derivative of relu).
    Step,
    /// `x * sigmoid(x)`, also called swish.
    Silu,
}

impl UnaryOp {
    /// Every op, with an example argument where it takes one. The WGSL kernel numbers the ops
    /// in this order, and the kernel tests, the gradient tests and the self-test walk this
    /// list, so an op added here is tested on both devices without being listed anywhere else.
    pub const ALL: [UnaryOp; 12] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Powf(1.7),
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Scale(-1.5),
        UnaryOp::AddScalar(0.25),
        UnaryOp::Step,
        UnaryOp::Silu,
    ];

    /// The op applied to one value.
    #[inline]
    pub fn apply<T: Element>(self, x: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Powf(p) => x.powf(T::from_f64(p)),
            UnaryOp::Relu => {
                if x > zero {
                    x
                } else {
                    zero
                }
            }
            UnaryOp::Sigmoid => one / (one + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Scale(c) => x * T::from_f64(c),
            UnaryOp::AddScalar(c) => x + T::from_f64(c),
            UnaryOp::Step => {
                if x > zero {
                    one
                } else {
                    zero
                }
            }
            UnaryOp::Silu => x / (one + (-x).exp()),
        }
    }

    /// The lowercase name, as in `Op::name` (which adds the scalar) and the self-test.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::Relu => "relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Scale(_) => "scale",
            UnaryOp::AddScalar(_) => "add_scalar",
            UnaryOp::Step => "step",
            UnaryOp::Silu => "silu",
        }
    }

    /// The scalar the op takes (exponent, factor, addend); 0 for the others.
    pub fn arg(self) -> f64 {
        match self {
            UnaryOp::Powf(c) | UnaryOp::Scale(c) | UnaryOp::AddScalar(c) => c,
            _ => 0.0,
        }
    }

    /// The op's number in the WGSL kernel: its place in [`UnaryOp::ALL`].
    pub fn code(self) -> u32 {
        let same = |o: &UnaryOp| std::mem::discriminant(o) == std::mem::discriminant(&self);
        Self::ALL.iter().position(same).expect("ALL lists every op") as u32
    }

    /// Where tests draw inputs: inside the domain (log, sqrt and powf need x > 0) and where
    /// f32 keeps enough precision for a central difference.
    pub fn test_inputs(self) -> (f64, f64) {
        match self {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Powf(_) => (0.2, 3.0),
            UnaryOp::Sigmoid => (-4.0, 4.0),
            UnaryOp::Tanh => (-3.0, 3.0),
            _ => (-2.0, 2.0),
        }
    }
}

/// Binary ops. Comparisons return 1.0 or 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// 1 where a == b
    Eq,
    /// The larger of `a` and `b`.
    Maximum,
    /// `a` where `b > 0`, else 0: relu's gradient `a` at input `b`, in one pass (what
    /// PyTorch calls `threshold_backward`; a NaN gradient where `b <= 0` still gives 0).
    ReluGrad,
}

impl BinaryOp {
    /// Every op, in the order the WGSL kernel numbers them.
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Eq,
        BinaryOp::Maximum,
        BinaryOp::ReluGrad,
    ];

    /// The op applied to one pair of values.
    #[inline]
    pub fn apply<T: Element>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Eq => {
                if a == b {
                    T::one()
                } else {
                    T::zero()
                }
            }
            BinaryOp::Maximum => a.max(b),
            BinaryOp::ReluGrad => {
                if b > T::zero() {
                    a
                } else {
                    T::zero()
                }
            }
        }
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Eq => "eq",
            BinaryOp::Maximum => "maximum",
            BinaryOp::ReluGrad => "relu_grad",
        }
    }

    /// The op's number in the WGSL kernel: its place in [`BinaryOp::ALL`].
    pub fn code(self) -> u32 {
        Self::ALL
            .iter()
            .position(|&o| o == self)
            .expect("ALL lists every op") as u32
    }
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// `f(a, b)` with numpy broadcasting, computing each output's input positions from scratch.
/// Returns the values and the broadcast shape.
///
/// ```
/// use senet_spec::elementwise::broadcast_binary;
/// // [2, 1] + [3] -> [2, 3]
/// let (y, shape) = broadcast_binary(&[10.0, 20.0], &[2, 1], &[1.0, 2.0, 3.0], &[3], |a, b| a + b);
/// assert_eq!(shape, [2, 3]);
/// assert_eq!(y, [11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
/// ```
pub fn broadcast_binary(
    a: &[f64],
    a_shape: &[usize],
    b: &[f64],
    b_shape: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<f64>, Vec<usize>) {
    let rank = a_shape.len().max(b_shape.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, rank - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (ap, bp) = (pad(a_shape), pad(b_shape));
    let out_shape: Vec<usize> = ap.iter().zip(&bp).map(|(&x, &y)| x.max(y)).collect();
    let (sa, sb, so) = (strides(&ap), strides(&bp), strides(&out_shape));
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut ia, mut ib) = (0, 0);
        for d in 0..rank {
            let i = (flat / so[d]) % out_shape[d];
            ia += if ap[d] == 1 { 0 } else { i * sa[d] };
            ib += if bp[d] == 1 { 0 } else { i * sb[d] };
        }
        out.push(f(a[ia], b[ib]));
    }
    (out, out_shape)
}

/// Moves the axes of a contiguous array: output axis `i` is input axis `axes[i]`.
pub fn permute(x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
    let (si, so) = (strides(shape), strides(&out_shape));
    (0..x.len())
        .map(|flat| {
            let src: usize = (0..axes.len())
                .map(|d| ((flat / so[d]) % out_shape[d]) * si[axes[d]])
                .sum();
            x[src]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each formula at points worked out by hand, on both sides of 0 where the op has one
    /// (the kernels of both backends are tested against `apply`, so `apply` itself is checked
    /// here). Every op of `ALL` needs at least two rows.
    #[test]
    fn unary_formulas_by_hand() {
        let e = std::f64::consts::E;
        let rows: &[(&str, f64, f64)] = &[
            ("neg", 2.0, -2.0),
            ("neg", -0.5, 0.5),
            ("exp", 1.0, e),
            ("exp", -1.0, 1.0 / e),
            ("log", e * e, 2.0),
            ("log", 1.0 / e, -1.0),
            ("sqrt", 9.0, 3.0),
            ("sqrt", 0.25, 0.5),
            ("powf", 4.0, 4f64.powf(1.7)),
            ("powf", 1.0, 1.0),
            ("relu", -3.0, 0.0),
            ("relu", 2.5, 2.5),
            ("sigmoid", 0.0, 0.5),
            ("sigmoid", 1.0, e / (e + 1.0)),
            ("tanh", 0.5, (e - 1.0) / (e + 1.0)),
            ("tanh", -0.5, (1.0 - e) / (e + 1.0)),
            ("scale", 2.0, -3.0),
            ("scale", -1.0, 1.5),
            ("add_scalar", 2.0, 2.25),
            ("add_scalar", -1.0, -0.75),
            ("step", 0.5, 1.0),
            ("step", -0.5, 0.0),
            ("silu", 1.0, e / (e + 1.0)),
            ("silu", -1.0, -1.0 / (e + 1.0)),
        ];
        for op in UnaryOp::ALL {
            let mine: Vec<_> = rows.iter().filter(|r| r.0 == op.name()).collect();
            assert!(
                mine.len() >= 2,
                "{} needs two hand-worked points",
                op.name()
            );
            for (_, x, want) in mine {
                let got = op.apply(*x);
                assert!(
                    (got - want).abs() < 1e-12,
                    "{}({x}) = {got}, want {want}",
                    op.name()
                );
            }
        }
        // Codes are places in ALL: distinct, and the inverse of indexing.
        for (i, op) in UnaryOp::ALL.iter().enumerate() {
            assert_eq!(op.code() as usize, i);
        }
    }

    #[test]
    fn relu_grad_passes_the_gradient_where_the_input_is_positive() {
        let g = BinaryOp::ReluGrad;
        assert_eq!(g.apply(2.5, 0.1), 2.5);
        assert_eq!(g.apply(2.5, 0.0), 0.0);
        assert_eq!(g.apply(-4.0, -1.0), 0.0);
        assert_eq!(g.apply(f64::NAN, -1.0), 0.0);
        // The same as the gradient of relu written as `g * step(x)` away from NaN.
        for (a, b) in [(1.5, 3.0), (-2.0, 0.5), (7.0, -0.5)] {
            assert_eq!(g.apply(a, b), a * UnaryOp::Step.apply(b));
        }
    }
}
