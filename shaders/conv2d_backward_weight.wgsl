// 2-D convolution backward over NCHW arrays, the weight and bias gradients: `backward_weight`
// (an implicit GEMM) with `reduce_splits`, `direct_backward_weight` for small groups, and
// `backward_bias`. The launcher prepends invocation.wgsl, workgroup_reduce.wgsl,
// gemm_tile.wgsl and conv2d_common.wgsl. Every sum is taken by one thread or one workgroup in
// a fixed order (no atomics), so results are the same bits on every run.
//
// The weight gradient is an implicit GEMM with a long K. Per group,
//   dW_g [M = cout_g, N = cin_g * kh * kw] = dY_g [cout_g, K = batch * out_h * out_w] @ X_cols^T
// K is large (every output position of the batch) while M and N are small, so K is split into
// `splits` contiguous ranges, each its own set of workgroups (the GEMM's product index is
// split * groups + group) writing a partial dW to its own slice of a scratch buffer;
// `reduce_splits` then adds the slices in order 0, 1, 2, ...
//
// Small groups (depthwise included) get `direct_backward_weight`, one workgroup per weight
// element; `backward_bias` gives one workgroup to each channel. Both sum over the batch and the
// output positions, threads striding over the positions, and combine the threads' sums with
// workgroup_reduce.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
// The weight gradient, the partial ones of the K ranges, or (backward_bias) the bias gradient.
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
// reduce_splits: the partial weight gradients.
@group(0) @binding(1) var<storage, read> partials: array<f32>;

// Thread t's r-th column of the X_cols^T slab, (ci, tap) decoded once, since B walks K and a
// thread loads the same 4 columns (tile columns t / 16 + 16 r) at every step.
var<private> col_valid: array<bool, 4>;
var<private> col_plane: array<u32, 4>;
var<private> col_tap: array<vec2<i32>, 4>;

// The group of this workgroup's product, and the end of its K range.
var<private> group: u32;
var<private> k_end: u32;

// Decodes the thread's 4 B columns, and returns this split's K range.
fn begin_tile() -> vec2<u32> {
    group = tile.batch % p.groups;
    let taps = p.kh * p.kw;
    for (var r = 0u; r < 4u; r++) {
        let j = tile.col0 + tile.t / 16u + 16u * r;
        col_valid[r] = j < p.cin_g * taps;
        col_plane[r] = (j / taps) * p.h * p.w;
        col_tap[r] = tap_offset(j % taps);
    }
    let k_begin = tile.batch / p.groups * p.k_split;
    k_end = min(k_begin + p.k_split, p.batch * p.oh * p.ow);
    return vec2<u32>(k_begin, k_end);
}

// The output position k of this step's loads (both slabs walk K, neighbouring threads taking
// neighbouring positions: contiguous in dy, nearby in x), decoded once for all 8 loads.
struct Position {
    // Inside this workgroup's K range.
    valid: bool,
    // Index of dy[n, group's first channel, oh, ow]; of x[n, group's first channel, 0, 0].
    dy_at: u32,
    x_base: u32,
    // The window's origin in x.
    origin: vec2<i32>,
};

var<private> pos: Position;

fn begin_step(k0: u32) {
    let k = k0 + tile.t % 16u;
    let plane = p.oh * p.ow;
    let n = k / plane;
    pos.valid = k < k_end;
    pos.dy_at = (n * p.cout + group * p.cout_g) * plane + k % plane;
    pos.x_base = (n * p.cin + group * p.cin_g) * p.h * p.w;
    pos.origin = window_origin(k % plane);
}

// dY_g(co, k)
fn load_a(r: u32, co: u32, k: u32) -> f32 {
    if (pos.valid && co < p.cout_g) {
        return dy[pos.dy_at + co * p.oh * p.ow];
    }
    return 0.0;
}

// X_cols^T(k, j) for the thread's r-th column j.
fn load_b(r: u32, k: u32, j: u32) -> f32 {
    let at = pos.origin + col_tap[r];
    if (pos.valid && col_valid[r] && inside(at)) {
        return x[pos.x_base + col_plane[r] + plane_offset(at)];
    }
    return 0.0;
}

// Into the slice of this split.
fn store_c(co: u32, j: u32, v: f32) {
    let split = tile.batch / p.groups;
    dw[split * p.len + (group * p.cout_g + co) * p.cin_g * p.kh * p.kw + j] = v;
}

@compute @workgroup_size(16, 16)
fn backward_weight(inv: Invocation) {
    run_gemm(inv, p.cout_g, p.cin_g * p.kh * p.kw, p.groups * p.splits, true, false);
}

// dw[i] = sum over s of partials[s * len + i], in order of s.
// ---- the subgroup GEMM's view (gemm_subgroup.wgsl): the same product, decoded per slot ------

var<private> sg_group: u32;
var<private> sg_split: u32;
// Per column slot (ci, tap): ci's plane offset and the tap's offset (sg_ok, from
// conv2d_common.wgsl, says whether the column lies inside dW).
var<private> sg_plane: array<u32, SG_COLS_PER_LANE>;
var<private> sg_tap: array<vec2<i32>, SG_COLS_PER_LANE>;
// Per K position (n, oh, ow): where its dy and x values start, and the window's origin.
var<private> sg_dy_at: u32;
var<private> sg_x_base: u32;
var<private> sg_origin: vec2<i32>;

fn sg_dims() -> vec3<u32> {
    return vec3<u32>(p.cout_g, p.cin_g * p.kh * p.kw, p.groups * p.splits);
}

fn sg_tile(product: u32) -> vec2<u32> {
    sg_group = product % p.groups;
    sg_split = product / p.groups;
    let k_begin = sg_split * p.k_split;
    return vec2<u32>(k_begin, min(k_begin + p.k_split, p.batch * p.oh * p.ow));
}

fn sg_column(s: u32, j: u32) {
    let taps = p.kh * p.kw;
    let c = min(j, p.cin_g * taps - 1u);
    sg_ok[s] = j < p.cin_g * taps;
    sg_plane[s] = c / taps * p.h * p.w;
    sg_tap[s] = tap_offset(c % taps);
}

fn sg_step(k: u32) {
    let plane = p.oh * p.ow;
    let n = k / plane;
    sg_dy_at = (n * p.cout + sg_group * p.cout_g) * plane + k % plane;
    sg_x_base = (n * p.cin + sg_group * p.cin_g) * p.h * p.w;
    sg_origin = window_origin(k % plane);
}

// Loads from clamped indices and selects 0 outside (no branch around a load: see
// gemm_subgroup.wgsl).
fn sg_a(co: u32, k: u32) -> f32 {
    let v = dy[sg_dy_at + min(co, p.cout_g - 1u) * p.oh * p.ow];
    return select(0.0, v, co < p.cout_g);
}

fn sg_b(s: u32, k: u32) -> f32 {
    let at = sg_origin + sg_tap[s];
    let v = sg_texel(sg_x_base + sg_plane[s] + plane_offset(clamp_to_image(at)));
    return select(0.0, v, sg_ok[s] && inside(at));
}

fn sg_c(co: u32, s: u32, j: u32, v: f32) {
    dw[sg_split * p.len + (sg_group * p.cout_g + co) * p.cin_g * p.kh * p.kw + j] = v;
}

@compute @workgroup_size(WG)
fn reduce_splits(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        s += partials[k * p.len + i];
    }
    dw[i] = s;
}

// One workgroup per weight (co, ci, ki, kj): the sum over the batch and output positions of
// dy[n, co, oh, ow] * x[n, group's first channel + ci, ih, iw].
@compute @workgroup_size(RWG)
fn direct_backward_weight(inv: Invocation) {
    let taps = p.kh * p.kw;
    let id = workgroup_index(inv);
    if (id >= p.len) { return; }
    let co = id / (p.cin_g * taps);
    let ci = co / p.cout_g * p.cin_g + id / taps % p.cin_g;
    let tap = tap_offset(id % taps);
    let plane = p.oh * p.ow;
    var s = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let dybase = (n * p.cout + co) * plane;
        let xbase = (n * p.cin + ci) * p.h * p.w;
        for (var i = inv.lid.x; i < plane; i += RWG) {
            let at = window_origin(i) + tap;
            if (inside(at)) {
                s = fma(dy[dybase + i], x[xbase + plane_offset(at)], s);
            }
        }
    }
    s = workgroup_sum(s, inv.lid.x);
    if (inv.lid.x == 0u) { dw[id] = s; }
}

// One workgroup per output channel: dbias[c] = the sum of dy over the batch and positions.
@compute @workgroup_size(RWG)
fn backward_bias(inv: Invocation) {
    let c = workgroup_index(inv);
    if (c >= p.cout) { return; }
    let plane = p.oh * p.ow;
    var s = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        for (var i = inv.lid.x; i < plane; i += RWG) {
            s += dy[(n * p.cout + c) * plane + i];
        }
    }
    s = workgroup_sum(s, inv.lid.x);
    if (inv.lid.x == 0u) { dw[c] = s; }
}
