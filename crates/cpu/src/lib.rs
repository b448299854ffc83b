//! Fast CPU kernels for every op of the framework, on plain slices in row-major (C) order.
//!
//! This crate knows nothing of `Tensor`: a kernel takes input slices (contiguous, or strided
//! views for the elementwise ones) plus the descriptor of `senet-spec` that sizes it (a conv
//! geometry, a batch-norm shape, ...) and returns a fresh `Vec`; the optimizer steps update
//! their state in place. Kernels are generic over [`senet_spec::Element`] (f32 for training,
//! f64 for gradient checking). The layer kernels' tests compare them with the reference loops
//! of the same module in `senet-spec`, the optimizer steps' with hand-computed values; the
//! matmul, reduction and softmax kernels are checked against the references by the tensor
//! crate's self-test.
//!
//! [`gemm`] is our own blocked matrix product (under convolution and matmul) with AVX-512,
//! AVX2 and portable microkernels; [`simd`] picks the level at run time (`SENET_SIMD` caps
//! it) and measures the machine's peak for the benchmarks.
//!
//! Parallel kernels split work into chunks whose size does not depend on the number of
//! threads and combine partial results in a fixed order, so results are bit-for-bit the same
//! on any machine with any `RAYON_NUM_THREADS`.

use senet_spec::Element;

pub mod batchnorm;
pub mod conv2d;
pub mod elementwise;
pub mod gemm;
pub mod grouped_linear;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod simd;
pub mod softmax;
pub mod winograd;

/// Lanes of [`lane_sums`]: enough independent additions to keep the adder busy.
const LANES: usize = 8;

/// The `N` sums of `f(a[i], b[i])` (which returns `N` terms) in f64, element `i` going to lane
/// `i % LANES` and the lanes added in order at the end. A single running sum is one long chain
/// of dependent additions, each waiting for the last; eight lanes run eight at once (and
/// vectorize), and several sums share one pass over memory. The grouping is fixed, so the
/// result is the same on every run.
pub(crate) fn lane_sums<T: Element, const N: usize>(
    a: &[T],
    b: &[T],
    f: impl Fn(f64, f64) -> [f64; N],
) -> [f64; N] {
    let mut lanes = [[0f64; N]; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let add = |lane: &mut [f64; N], va: T, vb: T| {
        for (acc, t) in lane.iter_mut().zip(f(va.to_f64(), vb.to_f64())) {
            *acc += t;
        }
    };
    for (xa, xb) in ca.zip(cb) {
        for i in 0..LANES {
            add(&mut lanes[i], xa[i], xb[i]);
        }
    }
    for (i, (&va, &vb)) in ra.iter().zip(rb).enumerate() {
        add(&mut lanes[i], va, vb);
    }
    let mut total = [0f64; N];
    for lane in &lanes {
        for (t, v) in total.iter_mut().zip(lane) {
            *t += v;
        }
    }
    total
}

/// `dst.copy_from_slice(src)` for the short runs that packing and unfolding copy (2 to 32
/// values): written as a loop the compiler vectorizes in place, where `copy_from_slice` calls
/// `memcpy`, whose call and size dispatch cost more than moving so few values.
///
/// # Panics
/// If the lengths differ.
#[inline(always)]
pub(crate) fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    assert_eq!(dst.len(), src.len(), "copy_short: lengths differ");
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// Runs `f` on a rayon pool of `threads` threads: the kernels' thread-independence tests call
/// each kernel on 1, 2 and 3 threads and compare the bits.
#[cfg(test)]
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

/// Threads the parallel kernels run on (rayon's pool: `RAYON_NUM_THREADS`, else one per core).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// `dst` `[cols, rows]` = the transpose of `src` `[rows, cols]`, dst's rows `ld` apart (`ld >=
/// rows`), in parallel strips of [`STRIP`] rows of `dst` (see [`transpose_strip`]).
pub(crate) fn transpose<T: Element>(src: &[T], rows: usize, cols: usize, dst: &mut [T], ld: usize) {
    use rayon::prelude::*;
    assert!(ld >= rows && src.len() >= rows * cols);
    assert!(cols == 0 || dst.len() >= (cols - 1) * ld + rows);
    dst.par_chunks_mut(STRIP * ld)
        .enumerate()
        .take(cols.div_ceil(STRIP))
        .for_each(|(strip, dst_rows)| transpose_strip(src, rows, cols, strip, dst_rows, ld));
}

/// [`transpose`] on this thread alone, for callers that already run in parallel.
pub(crate) fn transpose_serial<T: Element>(
    src: &[T],
    rows: usize,
    cols: usize,
    dst: &mut [T],
    ld: usize,
) {
    assert!(ld >= rows && src.len() >= rows * cols);
    assert!(cols == 0 || dst.len() >= (cols - 1) * ld + rows);
    for (strip, dst_rows) in dst
        .chunks_mut(STRIP * ld)
        .enumerate()
        .take(cols.div_ceil(STRIP))
    {
        transpose_strip(src, rows, cols, strip, dst_rows, ld);
    }
}

/// Rows of `dst` (columns of `src`) per strip of a transpose.
const STRIP: usize = 16;

/// One strip of a transpose: dst rows `strip * STRIP..` (in `dst_rows`). A 16 x 16 block of
/// `src` is read into a small tile, row by row, and each of its columns written out as a
/// contiguous run of `dst`. Transposing element by element, either the reads or the writes
/// jump a whole row each time; with power-of-two rows (1024 and more floats here) those 16
/// jumps all land in one L1 cache set, which holds fewer, so every write missed L1: the 1024 x
/// 2048 weight gradient took 3.5 ms to transpose.
fn transpose_strip<T: Element>(
    src: &[T],
    rows: usize,
    cols: usize,
    strip: usize,
    dst_rows: &mut [T],
    ld: usize,
) {
    const B: usize = STRIP;
    let (c0, nc) = (strip * B, B.min(cols - strip * B));
    let mut tile = [[T::zero(); B]; B];
    for r0 in (0..rows).step_by(B) {
        let nr = B.min(rows - r0);
        for r in 0..nr {
            let row = &src[(r0 + r) * cols + c0..][..nc];
            for (c, &v) in row.iter().enumerate() {
                tile[c][r] = v;
            }
        }
        for (c, t) in tile[..nc].iter().enumerate() {
            dst_rows[c * ld + r0..][..nr].copy_from_slice(&t[..nr]);
        }
    }
}
