// Sum and max over the middle axis of x viewed as [outer, reduced, inner]; the result is
// [outer, inner]. Deterministic: every output is combined in a fixed order that depends only on
// the sizes (no atomics), so the same input gives the same bits on every run.
//
// A pass reduces chunks of `chunk` consecutive indices of the reduced axis and writes
// [outer, chunks, inner] partials; the launcher repeats passes until `chunks` is 1. Splitting a
// long axis this way keeps many workgroups busy when there are few outputs (a total sum).
// - `reduce_rows`: one workgroup per (outer, chunk, inner) output, its 256 threads striding over
//   the chunk and then combining in a shared-memory tree. For long rows and few columns.
// - `reduce_cols`: one thread per output, looping over its chunk; neighbouring threads read
//   neighbouring columns (coalesced). For many columns and short rows (a bias gradient).

// 0: sum, 1: max (the numbering of `op_code` in crates/gpu/src/reduce.rs).
override OP: u32 = 0u;

struct ReduceParams {
    outer: u32,
    reduced: u32,
    inner: u32,
    // Indices of the reduced axis per chunk, and the number of chunks.
    chunk: u32,
    chunks: u32,
    // outer * chunks * inner: the number of outputs of this pass.
    total: u32,
    _pad0: u32,
    _pad1: u32,
};

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 256>;

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

// Where output g of this pass reads: (first element, one past the last index, step).
fn output_range(g: u32) -> vec3<u32> {
    let j = g % rp.inner;
    let oc = g / rp.inner;
    let c = oc % rp.chunks;
    let o = oc / rp.chunks;
    let start = c * rp.chunk;
    let end = start + min(rp.chunk, rp.reduced - start); // no u32 overflow
    return vec3<u32>(o * rp.reduced * rp.inner + j, start, end);
}

@compute @workgroup_size(256)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (g >= rp.total) { return; }
    let r = output_range(g);
    var acc = identity();
    for (var k = r.y + lid.x; k < r.z; k += 256u) {
        acc = combine(acc, x[r.x + k * rp.inner]);
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            partial[lid.x] = combine(partial[lid.x], partial[lid.x + s]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        y[g] = partial[0];
    }
}

@compute @workgroup_size(256)
fn reduce_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (g >= rp.total) { return; }
    let r = output_range(g);
    var acc = identity();
    for (var k = r.y; k < r.z; k += 1u) {
        acc = combine(acc, x[r.x + k * rp.inner]);
    }
    y[g] = acc;
}
