//! Reductions over one contiguous block of axes. The caller views the input as
//! `[outer, reduced, inner]` (moving the reduced axes together first when they are not), and the
//! result is `[outer, inner]`. Each output is accumulated sequentially in index order, so results
//! do not depend on threading.
use rayon::prelude::*;
use senet_spec::reduce::ReduceOp;
use senet_spec::Element;

/// Reduces `x` viewed as `[outer, reduced, inner]` along the middle axis.
pub fn reduce<T: Element>(
    x: &[T],
    outer: usize,
    reduced: usize,
    inner: usize,
    op: ReduceOp,
) -> Vec<T> {
    debug_assert_eq!(x.len(), outer * reduced * inner);
    if reduced == 1 && op == ReduceOp::Sum {
        // The sum of one value is that value (the squeeze of a 1x1 plane).
        return x.to_vec();
    }
    let init = match op {
        ReduceOp::Sum => T::zero(),
        ReduceOp::Max => T::neg_infinity(),
    };
    let mut out = vec![init; outer * inner];
    let one = |o: usize, dst: &mut [T]| {
        let block = &x[o * reduced * inner..(o + 1) * reduced * inner];
        if inner == 1 {
            dst[0] = match op {
                ReduceOp::Sum => block.iter().copied().sum(),
                ReduceOp::Max => block.iter().copied().fold(init, T::max),
            };
            return;
        }
        for row in block.chunks_exact(inner) {
            for (d, &v) in dst.iter_mut().zip(row) {
                match op {
                    ReduceOp::Sum => *d += v,
                    ReduceOp::Max => *d = d.max(v),
                }
            }
        }
    };
    if x.len() >= 1 << 15 && outer > 1 {
        // (At least 64 outputs per task: a squeeze has one per channel and sample, each the
        // sum of a few values.)
        out.par_chunks_mut(inner)
            .with_min_len(64)
            .enumerate()
            .for_each(|(o, dst)| one(o, dst));
    } else {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(o, dst)| one(o, dst));
    }
    out
}
