//! Our own matrix product, `C = A @ B` (or `C += A @ B`), the kernel under convolution, dense
//! layers and matmul. It is written here, not taken from a crate, because this is the code a
//! learner comes to read, and because we need its result to be the same on any thread count.
//!
//! # How it is fast (the Goto/BLIS scheme)
//!
//! A product of an `m x k` and a `k x n` matrix does `2mkn` flops on `mk + kn` inputs, so it can
//! run near the CPU's peak only if each loaded value is used many times from registers and
//! caches:
//!
//! - The **microkernel** computes an `MR x NR` tile of C (6 x 32 with AVX-512, 6 x 16 with AVX2)
//!   in registers: for each `p` it loads `NR` values of B's row `p` and broadcasts `MR` values of
//!   A's column `p`, then does `MR * NR` fused multiply-adds. Twelve independent vector
//!   accumulators hide the FMA latency.
//! - **Packing** copies a `KC`-deep slice of B into `NR`-wide panels and an `MC x KC` block of A
//!   into `MR`-tall panels, each laid out in the exact order the microkernel reads it, so it
//!   streams through memory contiguously whatever A's and B's strides (transposed views cost
//!   nothing extra) and a panel of B stays in L1 while a block of A stays in L2.
//! - **Blocking**: for each `KC` slice of the inner dimension, B's slice is packed once (its
//!   panels in parallel), then tasks of `MC` rows x `NC` columns of C run in parallel, each
//!   packing its block of A and sweeping the microkernel over it.
//!
//! # Why the result does not depend on the thread count
//!
//! Each element of C is `sum_p a[i,p] b[p,j]`, accumulated in registers in order of `p` within
//! a `KC` slice, the slices added to C in order. Those sizes are constants; threads only decide
//! *which tile* a core computes, never how an element is summed. Edge tiles run the same
//! microkernel on zero-padded panels and keep the valid part, so they round exactly like full
//! ones. (The SIMD level does change the last bits: an FMA rounds once where the plain kernel
//! multiplies and adds.)
use crate::simd::{self, Level};
use rayon::prelude::*;
use senet_spec::Element;
use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};

/// Depth of one slice of the inner dimension: a packed `KC x NR` panel of B (32 KiB for AVX-512)
/// fits in L1.
const KC: usize = 256;
/// Rows of C per task: a packed `MC x KC` block of A (96 KiB) fits in L2. A multiple of every MR.
const MC: usize = 96;
/// Columns of C per task: enough microkernel calls per packed block of A to repay packing it.
const NC: usize = 256;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// The row-major `rows x cols` matrix in the first `rows * cols` elements of `data`.
    ///
    /// # Panics
    /// If `data` is shorter.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A view with row stride `rs` and column stride `cs`.
    ///
    /// # Panics
    /// If an element lies past the end of `data`.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(
                last < data.len(),
                "gemm: a {rows}x{cols} view (strides {rs}, {cs}) needs {} elements, the slice has {}",
                last + 1,
                data.len()
            );
        }
        Mat {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose, as a view (nothing is copied).
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// A writable matrix with unit column stride: element `(i, j)` is `data[i * rs + j]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// The row-major `rows x cols` matrix in the first `rows * cols` elements of `data`.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// Rows `rs` elements apart (`rs >= cols`), such as a block of columns of a wider matrix.
    ///
    /// # Panics
    /// If `rs < cols` or the last row runs past the end of `data`.
    pub fn strided(data: &'a mut [T], rows: usize, cols: usize, rs: usize) -> Self {
        assert!(
            rs >= cols,
            "gemm: row stride {rs} is below the {cols} columns"
        );
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * rs + cols <= data.len(),
                "gemm: a {rows}x{cols} output (row stride {rs}) does not fit in {} elements",
                data.len()
            );
        }
        MatMut {
            data,
            rows,
            cols,
            rs,
        }
    }
}

/// `c = a @ b`, overwriting `c`.
///
/// # Panics
/// If the shapes do not chain (`a: m x k`, `b: k x n`, `c: m x n`).
pub fn gemm<T: Element>(a: Mat<T>, b: Mat<T>, c: MatMut<T>) {
    gemm_into(a, b, c, false);
}

/// `c = a @ b`, or `c += a @ b` when `accumulate`.
///
/// # Panics
/// If the shapes do not chain (`a: m x k`, `b: k x n`, `c: m x n`).
pub fn gemm_into<T: Element>(a: Mat<T>, b: Mat<T>, c: MatMut<T>, accumulate: bool) {
    assert!(
        a.cols == b.rows && a.rows == c.rows && b.cols == c.cols,
        "gemm: shapes do not chain: {}x{} @ {}x{} -> {}x{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32, so these are the same views with the same lifetimes.
        let (a, b, c) = unsafe { (cast::<T, f32>(a), cast::<T, f32>(b), cast_mut::<T, f32>(c)) };
        match simd::level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => blocked::<f32, x86::Avx512>(a, b, c, accumulate),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => blocked::<f32, x86::Avx2>(a, b, c, accumulate),
            _ => blocked::<f32, Plain>(a, b, c, accumulate),
        }
    } else {
        blocked::<T, Plain>(a, b, c, accumulate);
    }
}

/// Runs `f` with every product it makes on this thread computed by this thread alone. For
/// callers that already run one product per thread side by side (a convolution's chunks of
/// samples): splitting each small product again across threads cost more in hand-offs than it
/// gained (the 64-channel 32x32 weight gradient spent about 8% of its time in the scheduler).
/// The result is the same either way: threads only decide which tile a core computes.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back as it was, even if `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// [`gemm`], computed by this thread alone when `one_thread` (see [`serial`]): for a kernel
/// whose chunks run one per thread, when there are at least as many chunks as threads.
pub fn chunk_gemm<T: Element>(one_thread: bool, a: Mat<T>, b: Mat<T>, c: MatMut<T>) {
    if one_thread {
        serial(|| gemm(a, b, c))
    } else {
        gemm(a, b, c)
    }
}

/// Reinterprets a view of `T` as a view of `U`. Caller: `T` and `U` are the same type.
unsafe fn cast<T: 'static, U: 'static>(m: Mat<T>) -> Mat<U> {
    debug_assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
    Mat {
        data: std::slice::from_raw_parts(m.data.as_ptr().cast(), m.data.len()),
        rows: m.rows,
        cols: m.cols,
        rs: m.rs,
        cs: m.cs,
    }
}

/// [`cast`] for a writable view.
unsafe fn cast_mut<T: 'static, U: 'static>(m: MatMut<T>) -> MatMut<U> {
    debug_assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
    MatMut {
        data: std::slice::from_raw_parts_mut(m.data.as_mut_ptr().cast(), m.data.len()),
        rows: m.rows,
        cols: m.cols,
        rs: m.rs,
    }
}

/// A microkernel: `MR x NR` of C from packed panels.
trait Micro<T> {
    const MR: usize;
    const NR: usize;
    /// `tile = A @ b_panel` over `kc` steps, then `c[i * ldc + j] = tile` (or `+=` when
    /// `accumulate`) for the whole `MR x NR` tile. Element `(i, p)` of A is at
    /// `a + i * a.0 + p * a.1`: a packed panel has strides `(1, MR)`, and A read in place has
    /// its own.
    ///
    /// # Safety
    /// `a` is valid for `MR x kc` values at those strides, `b` holds `kc * NR`, and `c` is
    /// valid for the tile's `MR` rows of `NR` values, `ldc` apart; the CPU has the kernel's
    /// instructions.
    unsafe fn tile(
        kc: usize,
        a: (*const T, usize, usize),
        b: *const T,
        c: *mut T,
        ldc: usize,
        accumulate: bool,
    );
}

/// The portable microkernel: plain multiply-adds on a 4 x 8 tile of accumulators, which the
/// compiler keeps in registers and vectorizes for the build's baseline instructions.
struct Plain;

impl<T: Element> Micro<T> for Plain {
    const MR: usize = 4;
    const NR: usize = 8;
    unsafe fn tile(
        kc: usize,
        (a, a_rs, a_cs): (*const T, usize, usize),
        b: *const T,
        c: *mut T,
        ldc: usize,
        accumulate: bool,
    ) {
        let b = std::slice::from_raw_parts(b, kc * 8);
        let mut acc = [[T::zero(); 8]; 4];
        for (p, bp) in b.chunks_exact(8).enumerate() {
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = *a.add(i * a_rs + p * a_cs);
                for j in 0..8 {
                    row[j] += ai * bp[j];
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let out = std::slice::from_raw_parts_mut(c.add(i * ldc), 8);
            for (o, &v) in out.iter_mut().zip(row) {
                *o = if accumulate { v + *o } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Micro;
    use std::arch::x86_64::*;

    const AVX512_MR: usize = 6;
    /// AVX-512: 6 rows x 32 columns = 12 zmm accumulators; per step 2 loads of B, 6 broadcasts
    /// of A, 12 FMAs.
    pub struct Avx512;

    impl Micro<f32> for Avx512 {
        const MR: usize = AVX512_MR;
        const NR: usize = 32;
        unsafe fn tile(
            kc: usize,
            a: (*const f32, usize, usize),
            b: *const f32,
            c: *mut f32,
            ldc: usize,
            accumulate: bool,
        ) {
            avx512_tile(kc, a, b, c, ldc, accumulate);
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_tile(
        kc: usize,
        (a, a_rs, a_cs): (*const f32, usize, usize),
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; AVX512_MR];
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(p * 32));
            let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i * a_rs + p * a_cs));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let out = c.add(i * ldc);
            for (h, &v) in row.iter().enumerate() {
                let dst = out.add(16 * h);
                let v = if accumulate {
                    _mm512_add_ps(v, _mm512_loadu_ps(dst))
                } else {
                    v
                };
                _mm512_storeu_ps(dst, v);
            }
        }
    }

    /// AVX2 + FMA: 6 rows x 16 columns = 12 ymm accumulators.
    pub struct Avx2;

    impl Micro<f32> for Avx2 {
        const MR: usize = 6;
        const NR: usize = 16;
        unsafe fn tile(
            kc: usize,
            a: (*const f32, usize, usize),
            b: *const f32,
            c: *mut f32,
            ldc: usize,
            accumulate: bool,
        ) {
            avx2_tile(kc, a, b, c, ldc, accumulate);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile(
        kc: usize,
        (a, a_rs, a_cs): (*const f32, usize, usize),
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * 16));
            let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i * a_rs + p * a_cs));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let out = c.add(i * ldc);
            for (h, &v) in row.iter().enumerate() {
                let dst = out.add(8 * h);
                let v = if accumulate {
                    _mm256_add_ps(v, _mm256_loadu_ps(dst))
                } else {
                    v
                };
                _mm256_storeu_ps(dst, v);
            }
        }
    }
}

/// The blocked product with microkernel `K` (see the module comment).
fn blocked<T: Element, K: Micro<T>>(a: Mat<T>, b: Mat<T>, c: MatMut<T>, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    let ldc = c.rs;
    if k == 0 {
        if !accumulate {
            for row in c.data.chunks_mut(ldc).take(m) {
                row[..n].fill(T::zero());
            }
        }
        return;
    }
    let (mr, nr) = (K::MR, K::NR);
    let (a_panels, b_panels) = (m.div_ceil(mr), n.div_ceil(nr));
    // A with a unit stride (row-major, or a transposed view of one) is read in place: the
    // microkernel's broadcasts take A's values straight from its rows, and packing, a full
    // copy of A per KC slice, is skipped. That copy cost as much as the multiply itself when
    // N is small (a 1x1 convolution over 1x1 maps: N is the batch). Only the last panel,
    // when fewer than MR rows remain, is packed, zero-padded to a full tile.
    //
    // Except a transposed view whose columns lie 16 KiB and more apart (Winograd's weight
    // gradient reads the tiles' transformed gradients that way): each of the microkernel's
    // steps then loads from another page, and packing such an A first made the 512-channel
    // 4x4 weight gradient about 12% faster.
    let in_place = a.cs == 1 || (a.rs == 1 && a.cs < 4096);
    let packed_panels = if in_place {
        usize::from(m % mr != 0)
    } else {
        a_panels
    };
    let first_packed = a_panels - packed_panels;
    let kc_max = KC.min(k);
    let mut ap = scratch::<T>(kc_max * packed_panels * mr);
    let mut bp = scratch::<T>(kc_max * b_panels * nr);
    let tasks_m = m.div_ceil(MC);
    let tasks_n = n.div_ceil(NC);
    // The output is shared by tasks that write disjoint tiles; a raw pointer crosses threads.
    let c_ptr = SendPtr(c.data.as_mut_ptr());
    // Inside [`serial`], every loop below runs as one piece on this thread.
    let min_len = if SERIAL.with(Cell::get) {
        usize::MAX
    } else {
        1
    };
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        // Both operands' slices are packed once, panel by panel in parallel, and shared by all
        // tasks.
        let mut pack_a_all = || {
            ap[..kc * packed_panels * mr]
                .par_chunks_mut(kc * mr)
                .with_min_len(min_len)
                .enumerate()
                .for_each(|(ip, panel)| pack_a(&a, (first_packed + ip) * mr, pc, kc, mr, panel))
        };
        let mut pack_b_all = || {
            bp[..kc * b_panels * nr]
                .par_chunks_mut(kc * nr)
                .with_min_len(min_len)
                .enumerate()
                .for_each(|(jp, panel)| pack_b(&b, pc, kc, jp * nr, nr, panel))
        };
        if min_len == 1 {
            rayon::join(pack_a_all, pack_b_all);
        } else {
            pack_a_all();
            pack_b_all();
        }
        let (ap, bp) = (&ap[..kc * packed_panels * mr], &bp[..kc * b_panels * nr]);
        // Where the microkernel reads rows `i0..i0 + MR` of A's slice: the packed panel, or A.
        let a_tile = |i0: usize| {
            let panel = i0 / mr;
            if panel >= first_packed {
                let p = &ap[(panel - first_packed) * kc * mr..][..kc * mr];
                (p.as_ptr(), 1, mr)
            } else {
                // In bounds: rows i0..i0 + MR and columns pc..pc + kc lie inside A's view.
                (a.data[i0 * a.rs + pc * a.cs..].as_ptr(), a.rs, a.cs)
            }
        };
        let add = accumulate || pc > 0;
        (0..tasks_m * tasks_n)
            .into_par_iter()
            .with_min_len(min_len)
            .for_each(|t| {
                let (ic, jc) = ((t / tasks_n) * MC, (t % tasks_n) * NC);
                let (mc, nc) = (MC.min(m - ic), NC.min(n - jc));
                let c_ptr = &c_ptr;
                for jr in (0..nc).step_by(nr) {
                    let b_panel = &bp[(jc + jr) / nr * kc * nr..][..kc * nr];
                    for ir in (0..mc).step_by(mr) {
                        let a_tile = a_tile(ic + ir);
                        let (rows, cols) = (mr.min(mc - ir), nr.min(nc - jr));
                        // SAFETY: the tile (ic + ir, jc + jr) of `rows x cols` lies inside C (the
                        // view was checked at construction) and only this task writes it; A's
                        // tile is a full packed panel or MR rows inside A, and the B panel holds
                        // kc * nr values.
                        unsafe {
                            let c_tile = c_ptr.0.add((ic + ir) * ldc + jc + jr);
                            if rows == mr && cols == nr {
                                K::tile(kc, a_tile, b_panel.as_ptr(), c_tile, ldc, add);
                            } else {
                                edge_tile::<T, K>(
                                    kc, a_tile, b_panel, c_tile, ldc, rows, cols, add,
                                );
                            }
                        }
                    }
                }
            });
    }
    give_back(ap);
    give_back(bp);
}

thread_local! {
    /// Set while this thread runs inside [`serial`].
    static SERIAL: Cell<bool> = const { Cell::new(false) };
    /// Packing buffers kept between products on this thread, any element type.
    static SCRATCH: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of at least `len` values for packed panels, reused from an earlier product on
/// this thread when one is free. A convolution runs one small product per chunk of samples,
/// and allocating and zeroing the panels each time cost as much as a third of the multiply.
/// Its contents are stale: packing writes every value the microkernel then reads.
fn scratch<T: Element>(len: usize) -> Vec<T> {
    let reused = SCRATCH.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().position(|b| b.is::<Vec<T>>())?;
        pool.swap_remove(at).downcast::<Vec<T>>().ok()
    });
    let mut buf = reused.map_or_else(Vec::new, |b| *b);
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    buf
}

/// Returns a [`scratch`] buffer to this thread's pool (a nested product on the same thread,
/// run while this one waited, may have added its own: the pool keeps a few).
fn give_back<T: Element>(buf: Vec<T>) {
    SCRATCH.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < 8 {
            pool.push(Box::new(buf));
        }
    });
}

/// A tile at C's right or bottom edge: the microkernel writes the whole tile to a scratch
/// buffer, and its valid `rows x cols` corner goes to C, added the way the kernel adds.
///
/// # Safety
/// `c` is valid for `rows` rows of `cols` values, `ldc` apart.
#[allow(clippy::too_many_arguments)]
unsafe fn edge_tile<T: Element, K: Micro<T>>(
    kc: usize,
    a_tile: (*const T, usize, usize),
    b_panel: &[T],
    c: *mut T,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut tile = [T::zero(); 12 * 32];
    debug_assert!(K::MR * K::NR <= tile.len());
    K::tile(
        kc,
        a_tile,
        b_panel.as_ptr(),
        tile.as_mut_ptr(),
        K::NR,
        false,
    );
    for i in 0..rows {
        let out = std::slice::from_raw_parts_mut(c.add(i * ldc), cols);
        for (o, &v) in out.iter_mut().zip(&tile[i * K::NR..][..cols]) {
            *o = if accumulate { v + *o } else { v };
        }
    }
}

/// Packs rows `i0..i0 + mr`, columns `pc..pc + kc` of A into one panel: for each `p`, the `mr`
/// values `a[i0 + i, pc + p]` (zero past A's last row).
fn pack_a<T: Element>(a: &Mat<T>, i0: usize, pc: usize, kc: usize, mr: usize, out: &mut [T]) {
    let rows = mr.min(a.rows - i0);
    if a.rs == 1 {
        // A transposed view: the `mr` values of each `p` are contiguous.
        for (p, dst) in out.chunks_exact_mut(mr).enumerate() {
            let base = i0 + (pc + p) * a.cs;
            crate::copy_short(&mut dst[..rows], &a.data[base..base + rows]);
            dst[rows..].fill(T::zero());
        }
        return;
    }
    for i in 0..mr {
        if i >= rows {
            for p in 0..kc {
                out[p * mr + i] = T::zero();
            }
            continue;
        }
        let base = (i0 + i) * a.rs + pc * a.cs;
        if a.cs == 1 {
            for (p, &v) in a.data[base..base + kc].iter().enumerate() {
                out[p * mr + i] = v;
            }
        } else {
            for p in 0..kc {
                out[p * mr + i] = a.data[base + p * a.cs];
            }
        }
    }
}

/// Packs rows `pc..pc + kc`, columns `j0..j0 + nr` of B into one panel: for each `p`, the `nr`
/// values `b[pc + p, j0 + j]` (zero past B's last column).
fn pack_b<T: Element>(b: &Mat<T>, pc: usize, kc: usize, j0: usize, nr: usize, out: &mut [T]) {
    let cols = nr.min(b.cols - j0);
    if b.cs == 1 {
        for (p, dst) in out.chunks_exact_mut(nr).enumerate() {
            let base = (pc + p) * b.rs + j0;
            crate::copy_short(&mut dst[..cols], &b.data[base..base + cols]);
            dst[cols..].fill(T::zero());
        }
    } else {
        // A transposed view: walk each column of B, contiguous in memory when rs == 1.
        for j in 0..nr {
            if j >= cols {
                for p in 0..kc {
                    out[p * nr + j] = T::zero();
                }
                continue;
            }
            let base = pc * b.rs + (j0 + j) * b.cs;
            if b.rs == 1 {
                // The common case, spelled out so that the loop has no multiply or bounds test.
                let src = &b.data[base..base + kc];
                for (dst, &v) in out.chunks_exact_mut(nr).zip(src) {
                    dst[j] = v;
                }
            } else {
                for p in 0..kc {
                    out[p * nr + j] = b.data[base + p * b.rs];
                }
            }
        }
    }
}

struct SendPtr<T>(*mut T);
// SAFETY: tasks write disjoint tiles through it (see `blocked`).
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_spec::matmul::matmul;
    use senet_spec::testing::{assert_close, rand_vec};

    /// Sizes around every blocking boundary: tiles (MR 4/6, NR 8/16/32), MC, NC and KC.
    const SIZES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (5, 3, 7),
        (6, 17, 32),
        (13, 40, 33),
        (97, 257, 65),
        (96, 256, 256),
        (100, 600, 270),
        (7, 513, 1),
        (1, 300, 530),
    ];

    fn reference<T: Element>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
        let f = |v: &[T]| v.iter().map(|&x| Element::to_f64(x)).collect::<Vec<_>>();
        matmul(&f(a), &f(b), 1, m, k, n)
            .into_iter()
            .map(T::from_f64)
            .collect()
    }

    fn check<T: Element>(tol: f64) {
        let mut rng = StdRng::seed_from_u64(3);
        for (m, k, n) in SIZES {
            let a = rand_vec::<T>(&mut rng, m * k, -1.0, 1.0);
            let b = rand_vec::<T>(&mut rng, k * n, -1.0, 1.0);
            let want = reference(&a, &b, m, k, n);
            let mut c = vec![T::from_f64(f64::NAN); m * n];
            gemm(
                Mat::new(&a, m, k),
                Mat::new(&b, k, n),
                MatMut::new(&mut c, m, n),
            );
            assert_close(&format!("{} {m}x{k}x{n}", T::NAME), &c, &want, tol);
            // The same product through transposed views of transposed copies.
            let at = transpose(&a, m, k);
            let bt = transpose(&b, k, n);
            let mut c2 = vec![T::zero(); m * n];
            gemm(
                Mat::new(&at, k, m).t(),
                Mat::new(&bt, n, k).t(),
                MatMut::new(&mut c2, m, n),
            );
            assert_close(
                &format!("{} transposed {m}x{k}x{n}", T::NAME),
                &c2,
                &want,
                tol,
            );
            // Accumulating into a block of a wider output leaves the other columns alone.
            let mut wide = vec![T::one(); m * (n + 3)];
            gemm_into(
                Mat::new(&a, m, k),
                Mat::new(&b, k, n),
                MatMut::strided(&mut wide, m, n, n + 3),
                true,
            );
            for i in 0..m {
                let plus_one: Vec<f64> = want[i * n..][..n]
                    .iter()
                    .map(|&v| Element::to_f64(v) + 1.0)
                    .collect();
                let got: Vec<f64> = wide[i * (n + 3)..][..n]
                    .iter()
                    .map(|&v| Element::to_f64(v))
                    .collect();
                assert_close(
                    &format!("{} accumulate row {i}", T::NAME),
                    &got,
                    &plus_one,
                    tol,
                );
                assert!(wide[i * (n + 3) + n..][..3].iter().all(|&v| v == T::one()));
            }
        }
    }

    fn transpose<T: Copy>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
        (0..cols * rows)
            .map(|i| x[(i % rows) * cols + i / rows])
            .collect()
    }

    #[test]
    fn matches_reference_f64() {
        check::<f64>(1e-12);
    }

    // Sums of up to 600 products of values in [-1, 1].
    #[test]
    fn matches_reference_f32() {
        check::<f32>(2e-5);
    }

    #[test]
    fn a_transposed_view_with_far_apart_columns_is_packed_and_matches() {
        // A `[13, 300]` read as the transpose of rows 4100 apart (packed, not read in place).
        let (m, k, n, ld) = (13, 300, 40, 4100);
        let mut rng = StdRng::seed_from_u64(4);
        let data = rand_vec::<f32>(&mut rng, (k - 1) * ld + m, -1.0, 1.0);
        let a: Vec<f32> = (0..m * k).map(|i| data[(i % k) * ld + i / k]).collect();
        let b = rand_vec::<f32>(&mut rng, k * n, -1.0, 1.0);
        let mut c = vec![f32::NAN; m * n];
        gemm(
            Mat::strided(&data, m, k, 1, ld),
            Mat::new(&b, k, n),
            MatMut::new(&mut c, m, n),
        );
        assert_close("far-apart columns", &c, &reference(&a, &b, m, k, n), 2e-5);
    }

    #[test]
    fn every_simd_level_this_cpu_has_matches_the_reference() {
        let (m, k, n) = (50, 300, 77);
        let mut rng = StdRng::seed_from_u64(5);
        let a = rand_vec::<f32>(&mut rng, m * k, -1.0, 1.0);
        let b = rand_vec::<f32>(&mut rng, k * n, -1.0, 1.0);
        let want = reference(&a, &b, m, k, n);
        for level in simd::available() {
            let mut c = vec![0f32; m * n];
            let (av, bv, cv) = (
                Mat::new(&a, m, k),
                Mat::new(&b, k, n),
                MatMut::new(&mut c, m, n),
            );
            match level {
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => blocked::<f32, x86::Avx512>(av, bv, cv, false),
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => blocked::<f32, x86::Avx2>(av, bv, cv, false),
                _ => blocked::<f32, Plain>(av, bv, cv, false),
            }
            assert_close(level.name(), &c, &want, 2e-5);
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let (m, k, n) = (200, 700, 300);
        let mut rng = StdRng::seed_from_u64(9);
        let a = rand_vec::<f32>(&mut rng, m * k, -1.0, 1.0);
        let b = rand_vec::<f32>(&mut rng, k * n, -1.0, 1.0);
        let run = |threads: usize| {
            let mut c = vec![0f32; m * n];
            crate::on_threads(threads, || {
                gemm(
                    Mat::new(&a, m, k),
                    Mat::new(&b, k, n),
                    MatMut::new(&mut c, m, n),
                )
            });
            c.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(5));
        // And inside `serial`, on a pool of four, with the flag put back afterwards.
        let mut c = vec![0f32; m * n];
        crate::on_threads(4, || {
            serial(|| {
                gemm(
                    Mat::new(&a, m, k),
                    Mat::new(&b, k, n),
                    MatMut::new(&mut c, m, n),
                )
            });
            assert!(!SERIAL.with(Cell::get));
        });
        assert_eq!(c.into_iter().map(f32::to_bits).collect::<Vec<_>>(), run(4));
    }

    #[test]
    #[should_panic(expected = "shapes do not chain")]
    fn mismatched_shapes_panic() {
        let (a, b, mut c) = ([0f32; 6], [0f32; 6], [0f32; 4]);
        gemm(
            Mat::new(&a, 2, 3),
            Mat::new(&b, 2, 3),
            MatMut::new(&mut c, 2, 2),
        );
    }
}
