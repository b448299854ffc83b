//! What the elementwise ops compute: the unary and binary functions themselves (every backend
//! applies these formulas, the WGSL kernels in `shaders/elementwise.wgsl` restate them), and
//! naive broadcasting and permutation loops to test strided kernels against.
use crate::Element;

/// Unary ops; the same names are used by the GPU kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    /// `x^p`
    Powf(f64),
    Relu,
    Sigmoid,
    Tanh,
    /// `x * c`
    Scale(f64),
    /// `x + c`
    AddScalar(f64),
    /// 1 where x > 0, else 0 (the derivative of relu).
    Step,
}

impl UnaryOp {
    #[inline]
    pub fn apply<T: Element>(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Powf(p) => x.powf(T::from_f64(p)),
            UnaryOp::Relu => {
                if x > T::zero() {
                    x
                } else {
                    T::zero()
                }
            }
            UnaryOp::Sigmoid => T::one() / (T::one() + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Scale(c) => x * T::from_f64(c),
            UnaryOp::AddScalar(c) => x + T::from_f64(c),
            UnaryOp::Step => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
        }
    }
}

/// Binary ops. Comparisons return 1.0 or 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// 1 where a == b
    Eq,
    Maximum,
}

impl BinaryOp {
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
        }
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
