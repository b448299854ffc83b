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

// ---- the subgroup GEMM's view (gemm_subgroup.wgsl): one product per stride phase ----------
//
// With stride s > 1 most taps miss a given pixel: output position o reads padded coordinate
// u = o * s + ki * d, so pixel u gets tap ki only when ki * d = u (mod s). The subgroup GEMM
// therefore splits the pixels by phase, the residue r = u mod s on each axis, and runs one
// product per (group, phase) over just that phase's taps: ki = k0 + t * step, where k0 is the
// first tap with k0 * d = r (mod s) and step = s / gcd(d, s). Then o = u / s - c0 - t * (d /
// gcd(d, s)) with c0 = (k0 * d - r) / s, with no division per element. A stride-2 3x3 kernel
// does 9 / 4 of the taps per pixel on average instead of 9, a stride-2 1x1 kernel one phase in
// four (the other phases have no tap and store zeros). Stride 1 is the one phase r = 0.

var<private> sg_group: u32;
// Per axis, for the workgroup's phase: its first input coordinate and how many it has, the
// first tap, the tap step, the number of taps, c0, and d / gcd(d, s).
var<private> sg_first: vec2<u32>;
var<private> sg_count: vec2<u32>;
var<private> sg_k0: vec2<u32>;
var<private> sg_kstep: vec2<u32>;
var<private> sg_taps: vec2<u32>;
var<private> sg_c0: vec2<i32>;
var<private> sg_odelta: vec2<i32>;
// Per column slot, besides sg_ok and sg_base (the index of dy[sample, group's first channel, 0,
// 0]): u / s, and the index of dx[sample, group's first channel, ih, iw].
var<private> sg_m: array<vec2<i32>, SG_COLS_PER_LANE>;
var<private> sg_out: array<u32, SG_COLS_PER_LANE>;
// Per K position (co, t): co within the group, the weight's tap index, and c0 + t * (d / g).
var<private> sg_co: u32;
var<private> sg_tap_index: u32;
var<private> sg_shift: vec2<i32>;

// The largest phase: ceil(h / sh) x ceil(w / sw) pixels (the launcher uses the same N).
fn sg_phase_plane() -> vec2<u32> {
    return (vec2<u32>(p.h, p.w) + vec2<u32>(p.sh, p.sw) - 1u) / vec2<u32>(p.sh, p.sw);
}

fn sg_dims() -> vec3<u32> {
    let plane = sg_phase_plane();
    return vec3<u32>(p.cin_g, p.batch * plane.x * plane.y, p.groups * p.sh * p.sw);
}

fn gcd(a: u32, b: u32) -> u32 {
    var x = a;
    var y = b;
    while (y != 0u) {
        let t = x % y;
        x = y;
        y = t;
    }
    return x;
}

fn sg_tile(product: u32) -> vec2<u32> {
    let phases = p.sh * p.sw;
    sg_group = product / phases;
    let r = vec2<u32>(product % phases / p.sw, product % phases % p.sw);
    let s = vec2<u32>(p.sh, p.sw);
    let d = vec2<u32>(p.dh, p.dw);
    let pad = vec2<u32>(p.ph, p.pw);
    let size = vec2<u32>(p.h, p.w);
    let k = vec2<u32>(p.kh, p.kw);
    let g = vec2<u32>(gcd(d.x, s.x), gcd(d.y, s.y));
    sg_kstep = s / g;
    sg_odelta = vec2<i32>(d / g);
    // The first tap of the phase; sg_kstep when none (then the phase has no taps).
    sg_k0 = sg_kstep;
    for (var t = 0u; t < sg_kstep.x; t++) {
        if (sg_k0.x == sg_kstep.x && t * d.x % s.x == r.x) { sg_k0.x = t; }
    }
    for (var t = 0u; t < sg_kstep.y; t++) {
        if (sg_k0.y == sg_kstep.y && t * d.y % s.y == r.y) { sg_k0.y = t; }
    }
    let found = sg_k0 < sg_kstep;
    sg_taps = select(vec2<u32>(0u), (max(k, sg_k0) - sg_k0 + sg_kstep - 1u) / sg_kstep, found);
    sg_c0 = vec2<i32>(select(vec2<u32>(0u), (sg_k0 * d - r) / s, found));
    sg_first = (r + s - pad % s) % s;
    sg_count = (max(size, sg_first) - sg_first + s - 1u) / s;
    return vec2<u32>(0u, p.cout_g * sg_taps.x * sg_taps.y);
}

fn sg_column(s: u32, col: u32) {
    let plane = sg_phase_plane();
    let n = min(col / (plane.x * plane.y), p.batch - 1u);
    let j = vec2<u32>(col % (plane.x * plane.y) / plane.y, col % plane.y);
    sg_ok[s] = col < p.batch * plane.x * plane.y && all(j < sg_count);
    let stride = vec2<u32>(p.sh, p.sw);
    let at = min(sg_first + j * stride, vec2<u32>(p.h, p.w) - 1u);
    sg_m[s] = vec2<i32>((at + vec2<u32>(p.ph, p.pw)) / stride);
    sg_base[s] = (n * p.cout + sg_group * p.cout_g) * p.oh * p.ow;
    sg_out[s] = (n * p.cin + sg_group * p.cin_g) * p.h * p.w + at.x * p.w + at.y;
}

fn sg_step(k: u32) {
    let per_co = sg_taps.x * sg_taps.y;
    sg_co = k / per_co;
    let t = vec2<u32>(k % per_co / sg_taps.y, k % sg_taps.y);
    let tap = sg_k0 + t * sg_kstep;
    sg_tap_index = tap.x * p.kw + tap.y;
    sg_shift = sg_c0 + vec2<i32>(t) * sg_odelta;
}

// Loads from clamped indices and selects 0 outside (no branch around a load: see
// gemm_subgroup.wgsl).
fn sg_a(ci: u32, k: u32) -> f32 {
    let taps = p.kh * p.kw;
    let w = wt[((sg_group * p.cout_g + sg_co) * p.cin_g + min(ci, p.cin_g - 1u)) * taps + sg_tap_index];
    return select(0.0, w, ci < p.cin_g);
}

fn sg_b(s: u32, k: u32) -> f32 {
    let o = sg_m[s] - sg_shift;
    let ok = sg_ok[s] && all(o >= vec2<i32>(0)) && o.x < i32(p.oh) && o.y < i32(p.ow);
    let c = vec2<u32>(clamp(o, vec2<i32>(0), vec2<i32>(i32(p.oh) - 1, i32(p.ow) - 1)));
    let v = sg_texel(sg_base[s] + (sg_co * p.oh + c.x) * p.ow + c.y);
    return select(0.0, v, ok);
}

fn sg_c(ci: u32, s: u32, col: u32, v: f32) {
    if (sg_ok[s]) {
        dx[sg_out[s] + ci * p.h * p.w] = v;
    }
}
