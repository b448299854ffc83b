// 2-D convolution backward over NCHW arrays, the input gradient: `backward_input`, an implicit
// GEMM, and `direct_backward_input` for small groups. The launcher prepends invocation.wgsl,
// gemm_tile.wgsl and conv2d_common.wgsl.
//
// The input gradient is a gather, written as an implicit GEMM. Per group,
//   dX_g [M = cin_g, N = batch * in_h * in_w] = W_g^T [cin_g, K = cout_g * kh * kw] @ dY_cols
// where dY_cols[(co, ki, kj), (n, ih, iw)] is the output gradient at the output position whose
// tap (ki, kj) reads input pixel (ih, iw): oh = (ih + ph - ki*dh) / sh when that divides
// exactly and lands inside the output, else 0. So each input pixel sums exactly the output
// positions and taps that read it, no two threads write the same element, and the result is
// the same bits on every run. As in the forward kernel, dY_cols is never built: the GEMM's
// slab loads compute each entry on the fly.
//
// Convolutions with small groups (depthwise included) get a direct kernel, as in the forward:
// `direct_backward_input`, one thread per input pixel looping over its group's output channels
// and the taps.

@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// (ih + ph, iw + pw): input pixel pix of a plane in the coordinates of the padded image.
fn padded(pix: u32) -> vec2<i32> {
    return vec2<i32>(i32(pix / p.w + p.ph), i32(pix % p.w + p.pw));
}

// dx[n, ci, ih, iw]: the sum, over the cout_g output channels of ci's group and the taps
// (ki, kj) through which an output position reads this pixel, of w * dy.
@compute @workgroup_size(WG)
fn direct_backward_input(inv: Invocation) {
    let idx = thread_index(inv);
    if (idx >= p.batch * p.cin * p.h * p.w) { return; }
    let e = nchw(idx, p.cin, p.h * p.w);
    let ci = e.y;
    let co0 = ci / p.cin_g * p.cout_g;
    let q = padded(e.z);
    var s = 0.0;
    for (var c = 0u; c < p.cout_g; c++) {
        let wbase = ((co0 + c) * p.cin_g + ci % p.cin_g) * p.kh * p.kw;
        let dybase = (e.x * p.cout + co0 + c) * p.oh * p.ow;
        for (var ki = 0u; ki < p.kh; ki++) {
            let th = q.x - i32(ki * p.dh);
            if (th < 0) { break; }
            let oh = u32(th) / p.sh;
            if (oh * p.sh != u32(th) || oh >= p.oh) { continue; }
            for (var kj = 0u; kj < p.kw; kj++) {
                let tw = q.y - i32(kj * p.dw);
                if (tw < 0) { break; }
                let ow = u32(tw) / p.sw;
                if (ow * p.sw != u32(tw) || ow >= p.ow) { continue; }
                s = fma(wt[wbase + ki * p.kw + kj], dy[dybase + oh * p.ow + ow], s);
            }
        }
    }
    dx[idx] = s;
}

// ---- the implicit GEMM ----------------------------------------------------------------------

// B walks N: the thread's column, decoded once; K is all of cout_g * kh * kw.
fn begin_tile() -> vec2<u32> {
    column.at = padded(decode_column(p.h * p.w, p.cout, p.cout_g, p.oh * p.ow));
    return vec2<u32>(0u, p.cout_g * p.kh * p.kw);
}

fn begin_step(k0: u32) {}

// W_g^T(ci, (co, tap)) = w[g*cout_g + co, ci, tap]; neighbouring threads walk the taps.
fn load_a(r: u32, ci: u32, k: u32) -> f32 {
    let taps = p.kh * p.kw;
    if (ci < p.cin_g && k < p.cout_g * taps) {
        return wt[((tile.batch * p.cout_g + k / taps) * p.cin_g + ci) * taps + k % taps];
    }
    return 0.0;
}

// dY_cols(k, pixel): the gradient of the output that tap k = (co, ki, kj) produced from this
// pixel, or 0 when no output position reads it through that tap.
fn load_b(r: u32, k: u32, col: u32) -> f32 {
    let taps = p.kh * p.kw;
    if (!column.valid || k >= p.cout_g * taps) { return 0.0; }
    let t = column.at - tap_offset(k % taps);
    if (t.x < 0 || t.y < 0) { return 0.0; }
    let oh = u32(t.x) / p.sh;
    let ow = u32(t.y) / p.sw;
    if (oh * p.sh != u32(t.x) || ow * p.sw != u32(t.y) || oh >= p.oh || ow >= p.ow) { return 0.0; }
    return dy[column.base + (k / taps * p.oh + oh) * p.ow + ow];
}

// dX_g(ci, col) is dx[n, g*cin_g + ci, ih, iw].
fn store_c(ci: u32, col: u32, v: f32) {
    dx[column_index(col, p.h * p.w, p.cin, tile.batch * p.cin_g + ci)] = v;
}

@compute @workgroup_size(16, 16)
fn backward_input(inv: Invocation) {
    run_gemm(inv, p.cin_g, p.batch * p.h * p.w, p.groups, true, true);
}

// ---- the subgroup GEMM's view (gemm_subgroup.wgsl): the same product, decoded per slot ------

// How the output position is found from the tap-shifted pixel, a pipeline constant: 0, stride
// 1 on both axes (the pixel itself); 1, both strides powers of two (a shift and a mask); 2, any
// stride (a division, slow on a CPU adapter, where integer vector division is a loop).
override STRIDE_KIND: u32 = 2u;

var<private> sg_group: u32;
// Per column slot, besides sg_ok and sg_base (the index of dy[sample, group's first channel, 0,
// 0]: conv2d_common.wgsl): the pixel in padded coordinates.
var<private> sg_at: array<vec2<i32>, SG_COLS_PER_LANE>;
// Per K position (co, tap): co within the group, the tap and its offset.
var<private> sg_co: u32;
var<private> sg_tap_index: u32;
var<private> sg_tap: vec2<i32>;
// STRIDE_KIND 1: the strides' log2 and the bits below them.
var<private> sg_shift: vec2<u32>;
var<private> sg_mask: vec2<u32>;

fn sg_dims() -> vec3<u32> {
    return vec3<u32>(p.cin_g, p.batch * p.h * p.w, p.groups);
}

fn sg_tile(product: u32) -> vec2<u32> {
    sg_group = product;
    sg_shift = firstTrailingBit(vec2<u32>(p.sh, p.sw));
    sg_mask = vec2<u32>(p.sh, p.sw) - 1u;
    return vec2<u32>(0u, p.cout_g * p.kh * p.kw);
}

fn sg_column(s: u32, col: u32) {
    let pix = sg_decode_column(s, col, sg_group, p.h * p.w, p.cout, p.cout_g, p.oh * p.ow);
    sg_at[s] = padded(pix);
}

fn sg_step(k: u32) {
    let taps = p.kh * p.kw;
    sg_co = k / taps;
    sg_tap_index = k % taps;
    sg_tap = tap_offset(sg_tap_index);
}

// Loads from clamped indices and selects 0 outside (no branch around a load: see
// gemm_subgroup.wgsl).
fn sg_a(ci: u32, k: u32) -> f32 {
    let taps = p.kh * p.kw;
    let w = wt[((sg_group * p.cout_g + sg_co) * p.cin_g + min(ci, p.cin_g - 1u)) * taps + sg_tap_index];
    return select(0.0, w, ci < p.cin_g);
}

fn sg_b(s: u32, k: u32) -> f32 {
    let t = sg_at[s] - sg_tap;
    let u = vec2<u32>(max(t, vec2<i32>(0)));
    var o = u;
    var on_grid = true;
    if (STRIDE_KIND == 1u) {
        o = u >> sg_shift;
        on_grid = all((u & sg_mask) == vec2<u32>(0u));
    } else if (STRIDE_KIND == 2u) {
        o = u / vec2<u32>(p.sh, p.sw);
        on_grid = all(o * vec2<u32>(p.sh, p.sw) == u);
    }
    let ok = sg_ok[s] && all(t >= vec2<i32>(0)) && on_grid && o.x < p.oh && o.y < p.ow;
    let v = sg_texel(sg_base[s] + (sg_co * p.oh + min(o.x, p.oh - 1u)) * p.ow + min(o.y, p.ow - 1u));
    return select(0.0, v, ok);
}

fn sg_c(ci: u32, col: u32, v: f32) {
    dx[column_index(col, p.h * p.w, p.cin, sg_group * p.cin_g + ci)] = v;
}
