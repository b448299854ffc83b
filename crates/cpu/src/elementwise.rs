//! Elementwise kernels: unary maps, binary ops with broadcasting (through strides), and the
//! strided gather that turns any view into a contiguous array.
//!
//! Broadcasting is expressed by the caller as a stride of 0 along a broadcast dimension, so
//! one kernel covers `[B,C,H,W] * [B,C,1,1]` and `[N] + [1]` alike.
use rayon::prelude::*;
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use senet_spec::Element;
use std::mem::MaybeUninit;

/// Below this many elements a kernel runs on the calling thread: spawning costs more.
const PAR_MIN: usize = 1 << 15;
/// Fixed chunk size for parallel loops (independent of the thread count).
const CHUNK: usize = 1 << 13;

/// Binds `$f` to `op` as a closure in which the op is a constant, then runs `$body` once per
/// op. Each loop over elements is thus compiled per op with no branch on the op inside it, so
/// it vectorizes; calling `op.apply` per element instead branched through a jump table on
/// every element and made relu's gradient 5x slower.
macro_rules! with_unary_op {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            UnaryOp::Neg => with_unary_op!(@ UnaryOp::Neg, $f, $body),
            UnaryOp::Exp => with_unary_op!(@ UnaryOp::Exp, $f, $body),
            UnaryOp::Log => with_unary_op!(@ UnaryOp::Log, $f, $body),
            UnaryOp::Sqrt => with_unary_op!(@ UnaryOp::Sqrt, $f, $body),
            UnaryOp::Powf(c) => with_unary_op!(@ UnaryOp::Powf(c), $f, $body),
            UnaryOp::Relu => with_unary_op!(@ UnaryOp::Relu, $f, $body),
            UnaryOp::Sigmoid => with_unary_op!(@ UnaryOp::Sigmoid, $f, $body),
            UnaryOp::Tanh => with_unary_op!(@ UnaryOp::Tanh, $f, $body),
            UnaryOp::Scale(c) => with_unary_op!(@ UnaryOp::Scale(c), $f, $body),
            UnaryOp::AddScalar(c) => with_unary_op!(@ UnaryOp::AddScalar(c), $f, $body),
            UnaryOp::Step => with_unary_op!(@ UnaryOp::Step, $f, $body),
            UnaryOp::Silu => with_unary_op!(@ UnaryOp::Silu, $f, $body),
        }
    };
    (@ $variant:expr, $f:ident, $body:expr) => {{
        let $f = move |x| $variant.apply(x);
        $body
    }};
}

/// [`with_unary_op`] for binary ops.
macro_rules! with_binary_op {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            BinaryOp::Add => with_binary_op!(@ BinaryOp::Add, $f, $body),
            BinaryOp::Sub => with_binary_op!(@ BinaryOp::Sub, $f, $body),
            BinaryOp::Mul => with_binary_op!(@ BinaryOp::Mul, $f, $body),
            BinaryOp::Div => with_binary_op!(@ BinaryOp::Div, $f, $body),
            BinaryOp::Eq => with_binary_op!(@ BinaryOp::Eq, $f, $body),
            BinaryOp::Maximum => with_binary_op!(@ BinaryOp::Maximum, $f, $body),
            BinaryOp::ReluGrad => with_binary_op!(@ BinaryOp::ReluGrad, $f, $body),
        }
    };
    (@ $variant:expr, $f:ident, $body:expr) => {{
        let $f = move |a, b| $variant.apply(a, b);
        $body
    }};
}

/// A new array of `n` elements whose fixed `CHUNK`-sized blocks are written by
/// `fill(block_index, block)`, in parallel when `n >= PAR_MIN`. The output is never zero-filled
/// first: one pass over memory instead of two.
fn fill_new<T: Element>(n: usize, fill: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    let init = |(i, block): (usize, &mut [MaybeUninit<T>])| {
        // Zeroed just before `fill` overwrites it, while the block sits in L1 cache: main
        // memory still sees one write, and `fill` gets an initialised `&mut [T]`.
        block.iter_mut().for_each(|v| {
            v.write(T::zero());
        });
        // SAFETY: every element of the block was initialised on the line above.
        let block = unsafe { &mut *(block as *mut [MaybeUninit<T>] as *mut [T]) };
        fill(i, block);
    };
    if n >= PAR_MIN {
        spare.par_chunks_mut(CHUNK).enumerate().for_each(init);
    } else {
        spare.chunks_mut(CHUNK).enumerate().for_each(init);
    }
    // SAFETY: the blocks tile `0..n` and each was initialised in `init`.
    unsafe { out.set_len(n) };
    out
}

/// `op` applied to every element of a contiguous array.
pub fn unary<T: Element>(x: &[T], op: UnaryOp) -> Vec<T> {
    with_unary_op!(op, |f| fill_new(x.len(), |i, out| {
        for (o, &v) in out.iter_mut().zip(&x[i * CHUNK..]) {
            *o = f(v);
        }
    }))
}

/// `op` applied to every element of `x`, in place.
pub fn unary_in_place<T: Element>(x: &mut [T], op: UnaryOp) {
    with_unary_op!(op, |f| {
        let apply = |c: &mut [T]| c.iter_mut().for_each(|v| *v = f(*v));
        if x.len() >= PAR_MIN {
            x.par_chunks_mut(CHUNK).for_each(apply);
        } else {
            apply(x);
        }
    })
}

/// A strided view of a flat buffer: element `idx` lives at `offset + sum(idx[d] * strides[d])`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a, T> {
    pub data: &'a [T],
    pub strides: &'a [usize],
    pub offset: usize,
}

impl<T> Strided<'_, T> {
    /// True when the view walks `data[offset..offset + numel]` in order.
    fn is_contiguous(&self, shape: &[usize]) -> bool {
        let mut expected = 1;
        for (&d, &s) in shape.iter().zip(self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }
}

/// Number of rows of `shape`: the product of all dimensions but the last (1 for a scalar).
fn row_count(shape: &[usize]) -> usize {
    shape[..shape.len().saturating_sub(1)].iter().product()
}

/// Walks the rows `rows` of `shape` (the outer dimensions, all but the last, in row-major
/// order), calling `f(out_row_start, offsets)` once per row with the starting offset of each
/// view; rows are `shape[last]` long. A range lets parallel tasks each walk their own rows.
fn for_each_row<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
    offsets: [usize; N],
    rows: std::ops::Range<usize>,
    mut f: impl FnMut(usize, [usize; N]),
) {
    if rows.is_empty() {
        return;
    }
    let rank = shape.len();
    if rank == 0 {
        f(0, offsets);
        return;
    }
    let row_len = shape[rank - 1];
    // The multi-index and offsets of the first row.
    let mut idx = vec![0usize; rank - 1];
    let mut offs = offsets;
    let mut r = rows.start;
    for d in (0..rank - 1).rev() {
        idx[d] = r % shape[d];
        r /= shape[d];
        for v in 0..N {
            offs[v] += idx[d] * strides[v][d];
        }
    }
    for row in rows {
        f(row * row_len, offs);
        // Advance the multi-index like an odometer, updating offsets incrementally.
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            for v in 0..N {
                offs[v] += strides[v][d];
            }
            if idx[d] < shape[d] {
                break;
            }
            for v in 0..N {
                offs[v] -= strides[v][d] * shape[d];
            }
            idx[d] = 0;
        }
    }
}

/// Gathers a strided view of `shape` into a new contiguous array.
pub fn copy_strided<T: Element>(src: Strided<T>, shape: &[usize]) -> Vec<T> {
    let numel: usize = shape.iter().product();
    if src.is_contiguous(shape) {
        return src.data[src.offset..src.offset + numel].to_vec();
    }
    let mut out = Vec::with_capacity(numel);
    let last_stride = shape
        .last()
        .map(|_| src.strides[shape.len() - 1])
        .unwrap_or(0);
    let row_len = shape.last().copied().unwrap_or(1);
    let rows = 0..row_count(shape);
    for_each_row(shape, [src.strides], [src.offset], rows, |_, [o]| {
        out.extend((0..row_len).map(|i| src.data[o + i * last_stride]));
    });
    out
}

/// `op(a, b)` over `shape`, both inputs given as strided views already broadcast to `shape`.
pub fn binary<T: Element>(a: Strided<T>, b: Strided<T>, shape: &[usize], op: BinaryOp) -> Vec<T> {
    with_binary_op!(op, |f| binary_with(a, b, shape, f))
}

fn binary_with<T: Element>(
    a: Strided<T>,
    b: Strided<T>,
    shape: &[usize],
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let numel: usize = shape.iter().product();
    if a.is_contiguous(shape) && b.is_contiguous(shape) {
        let (a, b) = (
            &a.data[a.offset..a.offset + numel],
            &b.data[b.offset..b.offset + numel],
        );
        return fill_new(numel, |i, out| {
            let (a, b) = (&a[i * CHUNK..], &b[i * CHUNK..]);
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    }
    let rank = shape.len();
    let (sa, sb) = if rank == 0 {
        (0, 0)
    } else {
        (a.strides[rank - 1], b.strides[rank - 1])
    };
    let row_len = shape.last().copied().unwrap_or(1);
    if numel == 0 {
        return Vec::new();
    }
    let mut out = vec![T::zero(); numel];
    // Fills `chunk`, the rows from `first` on: big arrays split into fixed blocks of rows
    // (the SE gate `[B,C,H,W] * [B,C,1,1]` is the common case), each walking its own rows.
    let rows_per_task = (CHUNK / row_len).max(1);
    let fill = |(task, chunk): (usize, &mut [T])| {
        let first = task * rows_per_task;
        let rows = first..first + chunk.len() / row_len;
        let strides = [a.strides, b.strides];
        for_each_row(
            shape,
            strides,
            [a.offset, b.offset],
            rows,
            |start, [oa, ob]| {
                let row = &mut chunk[start - first * row_len..][..row_len];
                match (sa, sb) {
                    (1, 0) => {
                        let bv = b.data[ob];
                        for (o, &a) in row.iter_mut().zip(&a.data[oa..]) {
                            *o = f(a, bv);
                        }
                    }
                    (0, 1) => {
                        let av = a.data[oa];
                        for (o, &b) in row.iter_mut().zip(&b.data[ob..]) {
                            *o = f(av, b);
                        }
                    }
                    (1, 1) => {
                        let rows = a.data[oa..].iter().zip(&b.data[ob..]);
                        for (o, (&a, &b)) in row.iter_mut().zip(rows) {
                            *o = f(a, b);
                        }
                    }
                    _ => {
                        for (i, o) in row.iter_mut().enumerate() {
                            *o = f(a.data[oa + i * sa], b.data[ob + i * sb]);
                        }
                    }
                }
            },
        );
    };
    if numel >= PAR_MIN {
        out.par_chunks_mut(rows_per_task * row_len)
            .enumerate()
            .for_each(fill);
    } else {
        fill((0, &mut out));
    }
    out
}

/// Writes the contiguous `src` of shape `shape` into `dst` at the strided positions of `dst_view`
/// (used by concat and the gradient of narrow).
pub fn scatter_strided<T: Element>(
    src: &[T],
    dst: &mut [T],
    strides: &[usize],
    offset: usize,
    shape: &[usize],
) {
    let rank = shape.len();
    let last_stride = if rank == 0 { 0 } else { strides[rank - 1] };
    let row_len = shape.last().copied().unwrap_or(1);
    for_each_row(
        shape,
        [strides],
        [offset],
        0..row_count(shape),
        |start, [o]| {
            for i in 0..row_len {
                dst[o + i * last_stride] = src[start + i];
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_row_and_column() {
        // a: [2,3] contiguous; b: [3] broadcast along rows (stride 0 on dim 0).
        let a = [1.0f64, 2., 3., 4., 5., 6.];
        let b = [10.0f64, 20., 30.];
        let out = binary(
            Strided {
                data: &a,
                strides: &[3, 1],
                offset: 0,
            },
            Strided {
                data: &b,
                strides: &[0, 1],
                offset: 0,
            },
            &[2, 3],
            BinaryOp::Add,
        );
        assert_eq!(out, vec![11., 22., 33., 14., 25., 36.]);
        // b as a column [2,1] broadcast along columns.
        let c = [100.0f64, 200.];
        let out = binary(
            Strided {
                data: &a,
                strides: &[3, 1],
                offset: 0,
            },
            Strided {
                data: &c,
                strides: &[1, 0],
                offset: 0,
            },
            &[2, 3],
            BinaryOp::Mul,
        );
        assert_eq!(out, vec![100., 200., 300., 800., 1000., 1200.]);
    }

    /// Element `flat` of `shape` read through strides, computed from scratch.
    fn at(v: &Strided<f32>, shape: &[usize], mut flat: usize) -> f32 {
        let mut off = v.offset;
        for d in (0..shape.len()).rev() {
            off += flat % shape[d] * v.strides[d];
            flat /= shape[d];
        }
        v.data[off]
    }

    #[test]
    fn large_broadcasts_and_transposes_match_index_by_index() {
        // Past PAR_MIN, so rows are split into parallel blocks: the SE gate [B,C,H,W] * [B,C,1,1]
        // (rows of 9, not dividing a block), rows of length 1, and a transposed operand.
        let x: Vec<f32> = (0..70_000).map(|i| (i % 101) as f32 * 0.5 - 7.0).collect();
        let s: Vec<f32> = (0..4000).map(|i| i as f32 * 0.01 + 1.0).collect();
        let cases: [(&[usize], Strided<f32>, Strided<f32>); 3] = [
            (
                &[4, 1000, 3, 3],
                Strided {
                    data: &x,
                    strides: &[9000, 9, 3, 1],
                    offset: 5,
                },
                Strided {
                    data: &s,
                    strides: &[1000, 1, 0, 0],
                    offset: 0,
                },
            ),
            (
                &[50_000, 1],
                Strided {
                    data: &x,
                    strides: &[1, 1],
                    offset: 0,
                },
                Strided {
                    data: &s,
                    strides: &[0, 1],
                    offset: 3,
                },
            ),
            (
                &[200, 300],
                Strided {
                    data: &x,
                    strides: &[1, 200],
                    offset: 11,
                },
                Strided {
                    data: &x,
                    strides: &[300, 1],
                    offset: 0,
                },
            ),
        ];
        for (shape, a, b) in cases {
            let numel: usize = shape.iter().product();
            assert!(numel >= PAR_MIN);
            let got = binary(a, b, shape, BinaryOp::Sub);
            let want: Vec<f32> = (0..numel)
                .map(|i| at(&a, shape, i) - at(&b, shape, i))
                .collect();
            assert_eq!(got, want, "{shape:?}");
        }
    }

    #[test]
    fn transpose_copy() {
        let a = [1.0f32, 2., 3., 4., 5., 6.]; // [2,3]
        let t = copy_strided(
            Strided {
                data: &a,
                strides: &[1, 3],
                offset: 0,
            },
            &[3, 2],
        );
        assert_eq!(t, vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn large_parallel_matches_serial() {
        let n = PAR_MIN * 3 + 7;
        let a: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.1 - 3.0).collect();
        let out = unary(&a, UnaryOp::Sigmoid);
        for (o, x) in out.iter().zip(&a) {
            assert_eq!(*o, 1.0 / (1.0 + (-x).exp()));
        }
    }
}
