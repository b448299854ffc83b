// Sum and max over the middle axis of x viewed as [outer, reduced, inner]; the result is
// [outer, inner]. The launcher prepends invocation.wgsl and workgroup_reduce.wgsl.
// Deterministic: every output is combined in a fixed order that depends only on the sizes (no
// atomics), so the same input gives the same bits on every run.
//
// A pass reduces chunks of `chunk` consecutive indices of the reduced axis and writes
// [outer, chunks, inner] partials; the launcher repeats passes until `chunks` is 1. Splitting a
// long axis this way keeps many workgroups busy when there are few outputs (a total sum).
// - `reduce_rows`: one workgroup per (outer, chunk, inner) output, its WG threads striding over
//   the chunk and then combining with workgroup_reduce. For long rows and few columns.
// - `reduce_cols`: one thread per output, looping over its chunk; neighbouring threads read
//   neighbouring columns (coalesced). For many columns and short rows (a bias gradient).

// 0: sum, 1: max (the numbering of `op_code` in crates/gpu/src/reduce.rs).
override OP: u32 = 0u;

struct ReduceParams {
    outer: u32, reduced: u32, inner: u32,
    // Indices of the reduced axis per chunk, and the number of chunks.
    chunk: u32, chunks: u32,
    // outer * chunks * inner: the number of outputs of this pass.
    total: u32,
};

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn identity() -> f32 {
    if (OP == 1u) {
        return bitcast<f32>(0xff800000u); // -inf
    }
    return 0.0;
}

fn combine(a: f32, b: f32) -> f32 {
    if (OP == 1u) {
        return max(a, b);
    }
    return a + b;
}

// Combines the elements of output g's chunk with reduced index first, first + step, ... in
// that order.
fn combine_chunk(g: u32, first: u32, step: u32) -> f32 {
    let j = g % rp.inner;
    let oc = g / rp.inner;
    let start = oc % rp.chunks * rp.chunk;
    let end = start + min(rp.chunk, rp.reduced - start); // no u32 overflow
    let base = oc / rp.chunks * rp.reduced * rp.inner + j;
    var acc = identity();
    for (var k = start + first; k < end; k += step) {
        acc = combine(acc, x[base + k * rp.inner]);
    }
    return acc;
}

@compute @workgroup_size(WG)
fn reduce_cols(inv: Invocation) {
    let g = thread_index(inv);
    if (g >= rp.total) { return; }
    y[g] = combine_chunk(g, 0u, 1u);
}

@compute @workgroup_size(WG)
fn reduce_rows(inv: Invocation) {
    let g = workgroup_index(inv);
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (g >= rp.total) { return; }
    let acc = workgroup_reduce(combine_chunk(g, inv.lid.x, WG), inv.lid.x, WG, OP == 1u);
    if (inv.lid.x == 0u) { y[g] = acc; }
}
