//! Launchers for `shaders/elementwise.wgsl`: unary maps, binary ops on strided (broadcast)
//! views, the strided gather behind `contiguous()`, its inverse (a scatter, for concat) and fill.
//!
//! Strided views are simplified on the host before they reach a kernel: size-1 dimensions are
//! dropped and neighbours that step together in every view are merged, so `[B,C,H,W] * [1,C,1,1]`
//! runs as a rank-3 problem and a contiguous view takes the index-free path.
use crate::{Gpu, GpuBuffer, GpuError, Result, Shader};
use bytemuck::Zeroable;
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use std::sync::Arc;

pub const SHADER: Shader = shader!("elementwise", ["invocation.wgsl", "elementwise.wgsl"]);

/// Threads per workgroup of every 1-D kernel in the shader.
const WORKGROUP: usize = 256;

wgsl_params! {
    /// `UnaryParams` of the shader (also used by `fill`).
    pub(crate) struct UnaryParams {
        len: u32,
        arg: f32,
        /// Rounds the uniform up to 16 bytes.
        _pad: [u32; 2],
    }
}

/// Errors unless `len` elements can be indexed with u32 in a shader.
pub(crate) fn check_len(what: &str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| {
        GpuError::OutOfMemory(format!(
            "{what}: {len} elements are more than a kernel can index (2^32)"
        ))
    })
}

/// `op` applied to each of the first `len` elements of `x`.
pub fn unary(x: &GpuBuffer, len: usize, op: UnaryOp) -> Result<GpuBuffer> {
    let gpu = x.gpu();
    let params = UnaryParams {
        len: check_len("unary", len)?,
        arg: op.arg() as f32,
        _pad: [0; 2],
    };
    let y = gpu.alloc(len)?;
    gpu.dispatch(
        &SHADER,
        "unary",
        // The shader's `switch` numbers the ops as `UnaryOp::ALL` lists them.
        &[("OP", op.code() as f64)],
        bytemuck::bytes_of(&params),
        &[(1, x), (2, &y)],
        gpu.grid_1d(len.div_ceil(WORKGROUP)),
    )?;
    Ok(y)
}

/// The highest rank a strided kernel takes (the uniform holds 8 dimensions).
pub const MAX_RANK: usize = 8;

/// A strided view of a GPU array: element `idx` lives at `offset + sum(idx[d] * strides[d])`;
/// a stride of 0 broadcasts that dimension.
#[derive(Clone, Copy, Debug)]
pub struct StridedBuf<'a> {
    pub buf: &'a GpuBuffer,
    pub strides: &'a [usize],
    pub offset: usize,
}

wgsl_params! {
    /// `StridedParams` of the shader: dimensions right-aligned in 8 slots, `first` is the first
    /// real one. vec4 packing because uniform arrays need a 16-byte element stride.
    pub(crate) struct StridedParams {
        len: u32,
        off_a: u32,
        off_b: u32,
        first: u32,
        shape: [[u32; 4]; 2],
        stride_a: [[u32; 4]; 2],
        stride_b: [[u32; 4]; 2],
    }
}

/// Checks that `view` has one stride per dimension of `shape` and stays inside its buffer.
fn check_view(what: &str, name: &str, view: &StridedBuf, shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(GpuError::Validation(format!(
            "{what}: shape {shape:?} has rank {}, more than the {MAX_RANK} a kernel takes",
            shape.len()
        )));
    }
    if view.strides.len() != shape.len() {
        return Err(GpuError::Validation(format!(
            "{what}: {name} has strides {:?} for shape {shape:?} (one stride per dimension needed)",
            view.strides
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    // The last element the view touches; checked arithmetic, since strides come from callers.
    let last = shape
        .iter()
        .zip(view.strides)
        .try_fold(view.offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
    match last {
        Some(last) if last < view.buf.len() => Ok(()),
        _ => Err(GpuError::Validation(format!(
            "{what}: {name} (shape {shape:?}, strides {:?}, offset {}) reaches past its buffer of {} elements",
            view.strides,
            view.offset,
            view.buf.len()
        ))),
    }
}

/// Drops size-1 dimensions and merges neighbours that are one run in every view (outer stride
/// = inner stride * inner size). Returns the simplified shape and one stride list per view.
fn coalesce<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
) -> (Vec<usize>, [Vec<usize>; N]) {
    let mut dims: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out: [Vec<usize>; N] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let merge = !dims.is_empty() && (0..N).all(|v| out[v][dims.len() - 1] == strides[v][d] * n);
        if merge {
            *dims.last_mut().expect("merge implies a previous dimension") *= n;
            for v in 0..N {
                *out[v].last_mut().expect("one stride per dimension") = strides[v][d];
            }
        } else {
            dims.push(n);
            for v in 0..N {
                out[v].push(strides[v][d]);
            }
        }
    }
    (dims, out)
}

/// Packs a coalesced problem (rank <= 8, every index < 2^32: `check_view` bounded them by a
/// buffer length) into the uniform.
fn strided_params(
    len: u32,
    dims: &[usize],
    strides: [&[usize]; 2],
    offsets: [usize; 2],
) -> StridedParams {
    let mut p = StridedParams {
        len,
        off_a: offsets[0] as u32,
        off_b: offsets[1] as u32,
        first: (MAX_RANK - dims.len()) as u32,
        ..Zeroable::zeroed()
    };
    for (k, &n) in dims.iter().enumerate() {
        let slot = MAX_RANK - dims.len() + k;
        p.shape[slot / 4][slot % 4] = n as u32;
        p.stride_a[slot / 4][slot % 4] = strides[0][k] as u32;
        p.stride_b[slot / 4][slot % 4] = strides[1][k] as u32;
    }
    p
}

/// True when the coalesced view walks memory in order from its offset.
fn is_contiguous(dims: &[usize], strides: &[usize]) -> bool {
    dims.is_empty() || (dims.len() == 1 && strides[0] == 1)
}

/// `op(a, b)` over `shape` (both views already broadcast to it); the result is contiguous.
pub fn binary(a: StridedBuf, b: StridedBuf, shape: &[usize], op: BinaryOp) -> Result<GpuBuffer> {
    check_view("binary", "operand a", &a, shape)?;
    check_view("binary", "operand b", &b, shape)?;
    let gpu = a.buf.gpu();
    let numel: usize = shape.iter().product();
    let len = check_len("binary", numel)?;
    let out = gpu.alloc(numel)?;
    if numel == 0 {
        return Ok(out);
    }
    let (dims, [sa, sb]) = coalesce(shape, [a.strides, b.strides]);
    let entry = if is_contiguous(&dims, &sa) && is_contiguous(&dims, &sb) {
        "binary_contig"
    } else {
        "binary"
    };
    let params = strided_params(len, &dims, [&sa, &sb], [a.offset, b.offset]);
    gpu.dispatch(
        &SHADER,
        entry,
        // The shader's `binary_op` numbers the ops as `BinaryOp::ALL` lists them.
        &[("OP", op.code() as f64)],
        bytemuck::bytes_of(&params),
        &[(1, a.buf), (2, b.buf), (3, &out)],
        gpu.grid_1d(numel.div_ceil(WORKGROUP)),
    )?;
    Ok(out)
}

/// Gathers the view `src` of `shape` into a new contiguous array.
pub fn copy_strided(src: StridedBuf, shape: &[usize]) -> Result<GpuBuffer> {
    check_view("copy_strided", "the source", &src, shape)?;
    let gpu = src.buf.gpu();
    let numel: usize = shape.iter().product();
    let len = check_len("copy_strided", numel)?;
    let out = gpu.alloc(numel)?;
    if numel == 0 {
        return Ok(out);
    }
    let (dims, [s]) = coalesce(shape, [src.strides]);
    if is_contiguous(&dims, &s) {
        // One run of memory: a plain buffer copy.
        gpu.copy(src.buf, src.offset, &out, 0, numel)?;
        return Ok(out);
    }
    let params = strided_params(len, &dims, [&s, &s], [src.offset, src.offset]);
    gpu.dispatch(
        &SHADER,
        "gather",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, src.buf), (3, &out)],
        gpu.grid_1d(numel.div_ceil(WORKGROUP)),
    )?;
    Ok(out)
}

/// Writes the contiguous `src` (of `shape`) into `dst` at the positions of the view
/// (`strides`, `offset`); used by concat and the gradient of narrow. The view must not visit an
/// element twice (no stride 0 on a dimension longer than 1, no overlapping strides): the
/// writes run in parallel, so which one wins would be undefined.
pub fn scatter_strided(
    src: &GpuBuffer,
    dst: &GpuBuffer,
    strides: &[usize],
    offset: usize,
    shape: &[usize],
) -> Result<()> {
    let view = StridedBuf {
        buf: dst,
        strides,
        offset,
    };
    check_view("scatter_strided", "the destination", &view, shape)?;
    let numel: usize = shape.iter().product();
    let len = check_len("scatter_strided", numel)?;
    if src.len() < numel {
        return Err(GpuError::Validation(format!(
            "scatter_strided: the source holds {} elements, shape {shape:?} needs {numel}",
            src.len()
        )));
    }
    if numel == 0 {
        return Ok(());
    }
    let (dims, [s]) = coalesce(shape, [strides]);
    // Sufficient test that no element is visited twice: sorted by stride, each dimension must
    // step past everything the finer ones span.
    let mut order: Vec<(usize, usize)> = s.iter().copied().zip(dims.iter().copied()).collect();
    order.sort_unstable();
    let mut span = 0usize;
    for &(stride, n) in &order {
        if stride <= span {
            return Err(GpuError::Validation(format!("scatter_strided: the destination view (shape {shape:?}, strides {strides:?}) visits some elements more than once")));
        }
        span += (n - 1) * stride; // bounded by the buffer length (check_view)
    }
    let gpu = dst.gpu();
    if is_contiguous(&dims, &s) {
        return gpu.copy(src, 0, dst, offset, numel);
    }
    let params = strided_params(len, &dims, [&s, &s], [offset, offset]);
    gpu.dispatch(
        &SHADER,
        "scatter",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, src), (3, dst)],
        gpu.grid_1d(numel.div_ceil(WORKGROUP)),
    )
}

/// A new array of `len` copies of `value`.
pub fn fill(gpu: &Arc<Gpu>, len: usize, value: f32) -> Result<GpuBuffer> {
    let params = UnaryParams {
        len: check_len("fill", len)?,
        arg: value,
        _pad: [0; 2],
    };
    let y = gpu.alloc(len)?;
    if len > 0 {
        gpu.dispatch(
            &SHADER,
            "fill",
            &[],
            bytemuck::bytes_of(&params),
            &[(2, &y)],
            gpu.grid_1d(len.div_ceil(WORKGROUP)),
        )?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::{Rng, SeedableRng};
    use senet_spec::testing::assert_close;

    #[test]
    fn unary_ops_match_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        // Sizes below, at and above one workgroup; every op, on inputs in its domain.
        for len in [1usize, 255, 256, 1000] {
            for op in UnaryOp::ALL {
                let (lo, hi) = op.test_inputs();
                let x: Vec<f32> = (0..len).map(|_| rng.random_range(lo..hi) as f32).collect();
                let got: Vec<f32> = gpu
                    .read(&unary(&gpu.upload(&x).unwrap(), len, op).unwrap())
                    .unwrap();
                let want = senet_cpu::elementwise::unary(&x, op);
                // GPU transcendental functions may differ by a few ulps from Rust's.
                assert_close(&format!("{op:?}"), &got, &want, 1e-5);
            }
        }
    }

    use rand::seq::SliceRandom;
    use senet_cpu::elementwise::Strided;

    /// A random view of `shape`: dimensions stored in a random order (transposes), some
    /// broadcast (stride 0, unless `no_broadcast`), some stepping by 2 (slices), at a random
    /// offset in a buffer with slack at the end. Returns (data, strides, offset).
    fn random_view(
        rng: &mut rand::rngs::StdRng,
        shape: &[usize],
        no_broadcast: bool,
    ) -> (Vec<f32>, Vec<usize>, usize) {
        let rank = shape.len();
        let mut order: Vec<usize> = (0..rank).collect();
        order.shuffle(rng);
        let mut strides = vec![0; rank];
        let mut span = 1;
        for &d in order.iter().rev() {
            if !no_broadcast && rng.random_bool(0.25) {
                continue; // stride 0: broadcast
            }
            let step = if rng.random_bool(0.25) { 2 } else { 1 };
            strides[d] = span * step;
            span *= shape[d] * step;
        }
        let offset = rng.random_range(0..4);
        let len = offset + span + rng.random_range(0..3);
        // Small integers and halves: Eq then has hits, and Div stays finite (no zeros).
        let data = (0..len)
            .map(|_| rng.random_range(1..8) as f32 * if rng.random_bool(0.5) { 0.5 } else { -1.0 })
            .collect();
        (data, strides, offset)
    }

    /// Ranks 0 to 8, size-1 dimensions, and one shape larger than a workgroup.
    const SHAPES: &[&[usize]] = &[
        &[],
        &[1],
        &[7],
        &[3, 5],
        &[2, 3, 4],
        &[2, 1, 3, 4],
        &[3, 2, 2, 2, 3],
        &[2, 1, 2, 1, 2, 2, 1, 3],
        &[33, 19],
    ];

    #[test]
    fn binary_matches_the_cpu_kernel_on_strided_views() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for &shape in SHAPES {
            for op in BinaryOp::ALL {
                let (da, sa, oa) = random_view(&mut rng, shape, false);
                let (db, sb, ob) = random_view(&mut rng, shape, false);
                let (ba, bb) = (gpu.upload(&da).unwrap(), gpu.upload(&db).unwrap());
                let got: Vec<f32> = gpu
                    .read(
                        &binary(
                            StridedBuf {
                                buf: &ba,
                                strides: &sa,
                                offset: oa,
                            },
                            StridedBuf {
                                buf: &bb,
                                strides: &sb,
                                offset: ob,
                            },
                            shape,
                            op,
                        )
                        .unwrap(),
                    )
                    .unwrap();
                let want = senet_cpu::elementwise::binary(
                    Strided {
                        data: &da,
                        strides: &sa,
                        offset: oa,
                    },
                    Strided {
                        data: &db,
                        strides: &sb,
                        offset: ob,
                    },
                    shape,
                    op,
                );
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    // One rounding on each side; GPU division may be a couple of ulps off.
                    assert!(
                        (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{op:?} {shape:?} a {sa:?}+{oa} b {sb:?}+{ob}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn binary_contiguous_fast_path_with_offsets() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let a: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..1000).map(|i| (i * 3) as f32).collect();
        let (ba, bb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
        let got: Vec<f32> = gpu
            .read(
                &binary(
                    StridedBuf {
                        buf: &ba,
                        strides: &[300, 1],
                        offset: 5,
                    },
                    StridedBuf {
                        buf: &bb,
                        strides: &[300, 1],
                        offset: 0,
                    },
                    &[3, 300],
                    BinaryOp::Sub,
                )
                .unwrap(),
            )
            .unwrap();
        let want: Vec<f32> = (0..900).map(|i| a[i + 5] - b[i]).collect();
        assert_eq!(got, want); // one exact subtraction of small integers
    }

    #[test]
    fn copy_strided_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for &shape in SHAPES {
            for _ in 0..3 {
                let (d, s, o) = random_view(&mut rng, shape, false);
                let b = gpu.upload(&d).unwrap();
                let got: Vec<f32> = gpu
                    .read(
                        &copy_strided(
                            StridedBuf {
                                buf: &b,
                                strides: &s,
                                offset: o,
                            },
                            shape,
                        )
                        .unwrap(),
                    )
                    .unwrap();
                // A gather moves values: exact.
                assert_eq!(
                    got,
                    senet_cpu::elementwise::copy_strided(
                        Strided {
                            data: &d,
                            strides: &s,
                            offset: o
                        },
                        shape
                    ),
                    "{shape:?} {s:?}+{o}"
                );
            }
        }
    }

    #[test]
    fn scatter_strided_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for &shape in SHAPES {
            for _ in 0..3 {
                let (mut dst, s, o) = random_view(&mut rng, shape, true);
                let numel: usize = shape.iter().product();
                let src: Vec<f32> = (0..numel).map(|i| 100.0 + i as f32).collect();
                let (bs, bd) = (gpu.upload(&src).unwrap(), gpu.upload(&dst).unwrap());
                scatter_strided(&bs, &bd, &s, o, shape).unwrap();
                let got: Vec<f32> = gpu.read(&bd).unwrap();
                senet_cpu::elementwise::scatter_strided(&src, &mut dst, &s, o, shape);
                assert_eq!(got, dst, "{shape:?} {s:?}+{o}"); // values are moved: exact
            }
        }
    }

    #[test]
    fn fill_writes_every_element() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        for len in [0usize, 1, 257] {
            let got: Vec<f32> = gpu.read(&fill(&gpu, len, -2.5).unwrap()).unwrap();
            assert_eq!(got, vec![-2.5; len]);
        }
    }

    #[test]
    fn more_than_65535_workgroups_fold_into_y() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        // 65,537 workgroups of 256: the grid is [65535, 2, 1] and the last ones must still run.
        let len = 65_535 * 256 + 300;
        let got: Vec<f32> = gpu.read(&fill(&gpu, len, 1.5).unwrap()).unwrap();
        assert_eq!(got.len(), len);
        assert!(got.iter().all(|&v| v == 1.5));
    }

    #[test]
    fn bad_views_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let b = gpu.upload(&[0.0f32; 12]).unwrap();
        let v = |strides: &'static [usize], offset| StridedBuf {
            buf: &b,
            strides,
            offset,
        };
        let rank9 = [1usize; 9];
        let err = |r: Result<GpuBuffer>| match r {
            Err(GpuError::Validation(m)) => m,
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(
            err(binary(v(&[0; 9], 0), v(&[0; 9], 0), &rank9, BinaryOp::Add)).contains("rank 9")
        );
        assert!(
            err(binary(v(&[4, 1], 0), v(&[4], 0), &[3, 4], BinaryOp::Add)).contains("strides [4]")
        );
        // [3, 4] at offset 1 ends at element 12 of 12.
        assert!(err(copy_strided(v(&[4, 1], 1), &[3, 4])).contains("offset 1"));
        assert!(
            matches!(scatter_strided(&b, &b, &[0, 1], 0, &[2, 4]), Err(GpuError::Validation(m)) if m.contains("more than once"))
        );
        assert!(matches!(
            scatter_strided(&b, &b, &[1, 1], 0, &[2, 4]),
            Err(GpuError::Validation(_))
        ));
        let short = gpu.upload(&[0.0f32; 3]).unwrap();
        assert!(
            matches!(scatter_strided(&short, &b, &[4, 1], 0, &[3, 4]), Err(GpuError::Validation(m)) if m.contains("3 elements"))
        );
    }

    #[test]
    fn coalesce_merges_runs_and_drops_unit_dimensions() {
        // [B,C,H,W] * [1,C,1,1]: H and W merge in both views, the unit dims of b are broadcast.
        let (dims, [a, b]) = coalesce(&[2, 3, 4, 5], [&[60, 20, 5, 1], &[0, 1, 0, 0]]);
        assert_eq!(
            (dims, a, b),
            (vec![2, 3, 20], vec![60, 20, 1], vec![0, 1, 0])
        );
        let (dims, [a]) = coalesce(&[1, 3, 1, 4], [&[99, 4, 7, 1]]);
        assert_eq!((dims, a), (vec![12], vec![1]));
        // A transpose does not merge.
        let (dims, [a]) = coalesce(&[3, 2], [&[1, 3]]);
        assert_eq!((dims, a), (vec![3, 2], vec![1, 3]));
    }
}
