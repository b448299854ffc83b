// 2-D convolution forward over NCHW arrays: `forward`, an implicit GEMM, and `direct_forward`
// for small groups. The launcher prepends invocation.wgsl, gemm_tile.wgsl and
// conv2d_common.wgsl.
//
// For one group, a convolution is the matrix product Y_g = W_g @ X_cols:
//   W_g    [M = cout_g, K = cin_g * kh * kw]   the group's weights, row-major as stored;
//   X_cols [K, N = batch * out_h * out_w]      column (n, oh, ow) holds every input pixel that
//                                              output position sees (0 where it is padding).
// im2col would copy X_cols into memory first: kh*kw times the input, hundreds of MB at CIFAR
// sizes. An implicit GEMM never builds it: when the tiled GEMM of gemm_tile.wgsl copies a
// 16x64 slab of X_cols into workgroup memory, each thread computes which input pixel (or
// padding zero) an entry stands for and reads it straight from x. Row kidx of X_cols decodes
// to (ci, tap). The group is the GEMM's product index, so all groups run in one dispatch.
//
// Convolutions with small groups (ResNeXt's 4 or 8 channels per group; depthwise, 1) would
// leave most of the 64 tile rows idle, so they have a direct kernel (`direct_forward`): one
// thread per output element, looping over its group's input channels and the kh*kw taps.

// true: add bias[channel] to every output (a specialized pipeline).
override HAS_BIAS: bool = false;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
// Bound to `wt` when HAS_BIAS is false.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// B walks N: the thread's column, decoded once; K is all of cin_g * kh * kw.
fn begin_tile() -> vec2<u32> {
    column.at = window_origin(decode_column(p.oh * p.ow, p.cin, p.cin_g, p.h * p.w));
    return vec2<u32>(0u, p.cin_g * p.kh * p.kw);
}

fn begin_step(k0: u32) {}

// W_g(row, k): rows are contiguous along K.
fn load_a(r: u32, row: u32, k: u32) -> f32 {
    let kdim = p.cin_g * p.kh * p.kw;
    if (row < p.cout_g && k < kdim) {
        return wt[(tile.batch * p.cout_g + row) * kdim + k];
    }
    return 0.0;
}

// X_cols(k, column), 0 in the padding.
fn load_b(r: u32, k: u32, col: u32) -> f32 {
    let taps = p.kh * p.kw;
    if (!column.valid || k >= p.cin_g * taps) { return 0.0; }
    let at = column.at + tap_offset(k % taps);
    if (!inside(at)) { return 0.0; }
    return x[column.base + k / taps * p.h * p.w + plane_offset(at)];
}

// Y_g(row, col) is y[n, g*cout_g + row, oh, ow].
fn store_c(row: u32, col: u32, v: f32) {
    store_y(tile.batch, row, col, v);
}

// Y_g(row, col) of group g.
fn store_y(g: u32, row: u32, col: u32, v: f32) {
    let co = g * p.cout_g + row;
    var out = v;
    if (HAS_BIAS) {
        out += bias[co];
    }
    y[column_index(col, p.oh * p.ow, p.cout, co)] = out;
}

@compute @workgroup_size(16, 16)
fn forward(inv: Invocation) {
    run_gemm(inv, p.cout_g, p.batch * p.oh * p.ow, p.groups, true, true);
}

// Small groups: output channel co sees the cin_g input channels of its group, from channel
// co / cout_g * cin_g on. One thread per output element sums them and the taps in the order
// (ci, ki, kj), the GEMM's K order.
@compute @workgroup_size(WG)
fn direct_forward(inv: Invocation) {
    let idx = thread_index(inv);
    if (idx >= p.batch * p.cout * p.oh * p.ow) { return; }
    let e = nchw(idx, p.cout, p.oh * p.ow);
    let origin = window_origin(e.z);
    let co = e.y;
    var s = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xbase = (e.x * p.cin + co / p.cout_g * p.cin_g + ci) * p.h * p.w;
        let wbase = (co * p.cin_g + ci) * p.kh * p.kw;
        for (var ki = 0u; ki < p.kh; ki++) {
            let ih = origin.x + i32(ki * p.dh);
            if (ih < 0 || ih >= i32(p.h)) { continue; }
            for (var kj = 0u; kj < p.kw; kj++) {
                let iw = origin.y + i32(kj * p.dw);
                if (iw < 0 || iw >= i32(p.w)) { continue; }
                s = fma(wt[wbase + ki * p.kw + kj], x[xbase + u32(ih) * p.w + u32(iw)], s);
            }
        }
    }
    if (HAS_BIAS) {
        s += bias[co];
    }
    y[idx] = s;
}

// ---- the subgroup GEMM's view (gemm_subgroup.wgsl): the same product, decoded per slot ------

var<private> sg_group: u32;
// Per column slot, besides sg_ok and sg_base (the index of x[sample, group's first channel, 0,
// 0]: conv2d_common.wgsl): the window's origin.
var<private> sg_origin: array<vec2<i32>, SG_COLS_PER_LANE>;
// Per K position (ci, tap): ci's plane offset and the tap's offset.
var<private> sg_plane: u32;
var<private> sg_tap: vec2<i32>;

fn sg_dims() -> vec3<u32> {
    return vec3<u32>(p.cout_g, p.batch * p.oh * p.ow, p.groups);
}

fn sg_tile(product: u32) -> vec2<u32> {
    sg_group = product;
    return vec2<u32>(0u, p.cin_g * p.kh * p.kw);
}

fn sg_column(s: u32, col: u32) {
    let pix = sg_decode_column(s, col, sg_group, p.oh * p.ow, p.cin, p.cin_g, p.h * p.w);
    sg_origin[s] = window_origin(pix);
}

fn sg_step(k: u32) {
    let taps = p.kh * p.kw;
    sg_plane = k / taps * p.h * p.w;
    sg_tap = tap_offset(k % taps);
}

// Loads from clamped indices and selects 0 outside (no branch around a load: see
// gemm_subgroup.wgsl).
fn sg_a(row: u32, k: u32) -> f32 {
    let kdim = p.cin_g * p.kh * p.kw;
    let w = wt[(sg_group * p.cout_g + min(row, p.cout_g - 1u)) * kdim + k];
    return select(0.0, w, row < p.cout_g);
}

fn sg_b(s: u32, k: u32) -> f32 {
    let at = sg_origin[s] + sg_tap;
    let v = sg_texel(sg_base[s] + sg_plane + plane_offset(clamp_to_image(at)));
    return select(0.0, v, sg_ok[s] && inside(at));
}

fn sg_c(row: u32, s: u32, col: u32, v: f32) {
    store_y(sg_group, row, col, v);
}
