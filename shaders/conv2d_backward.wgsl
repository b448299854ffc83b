// 2-D convolution backward over NCHW arrays: input, weight and bias gradients. Every sum is
// taken by one thread or one workgroup in a fixed order (no atomics), so results are the same
// bits on every run.
//
// Input gradient (`backward_input`), a gather written as an implicit GEMM. Per group,
//   dX_g [M = cin_g, N = batch * in_h * in_w] = W_g^T [cin_g, K = cout_g * kh * kw] @ dY_cols
// where dY_cols[(co, ki, kj), (n, ih, iw)] is the output gradient at the output position whose
// tap (ki, kj) reads input pixel (ih, iw): oh = (ih + ph - ki*dh) / sh when that divides
// exactly and lands inside the output, else 0. So each input pixel sums exactly the output
// positions and taps that read it, and no two threads write the same element. Like the forward
// kernel, the matrix is never built: the GEMM's slab loads compute each entry on the fly.
//
// Weight gradient (`backward_weight`), an implicit GEMM with a long K. Per group,
//   dW_g [M = cout_g, N = cin_g * kh * kw] = dY_g [cout_g, K = batch * out_h * out_w] @ X_cols^T
// K is large (every output position of the batch) while M and N are small, so K is split into
// `splits` contiguous ranges, each its own set of workgroups writing a partial dW to its own
// slice of a scratch buffer; `reduce_splits` then adds the slices in order 0, 1, 2, ...
//
// Bias gradient (`backward_bias`): one workgroup per channel, threads striding over the
// positions, partial sums combined by a fixed tree in workgroup memory.
//
// Convolutions with small groups (depthwise included) get direct kernels, as in the forward:
// `direct_backward_input` (one thread per input pixel, looping over its group's output
// channels and the taps) and `direct_backward_weight` (one workgroup per weight, reduced like
// the bias).
//
// The GEMM kernels use the tiling of matmul.wgsl: 64x64 output tile per 16x16 workgroup, 4x4
// micro-tile per thread, K steps of 16 through workgroup memory.

const TILE: u32 = 64u;

// ConvParams comes from conv_params.wgsl, prepended by the launcher.

// What the three buffers hold depends on the entry point:
//   backward_input, direct_backward_input:   src_a = w,  src_b = dy, dst = dx
//   backward_weight, direct_backward_weight: src_a = dy, src_b = x,  dst = dw (or partials)
//   reduce_splits:                              src_a = partials,       dst = dw
//   backward_bias:                              src_a = dy,             dst = db
@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// Per-thread partial sums of the reductions.
var<workgroup> partial: array<f32, 256>;

// Sums partial[0..256] with a fixed tree; the result is in partial[0] for every thread.
fn reduce_partial(t: u32, v: f32) {
    partial[t] = v;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (t < half) {
            partial[t] += partial[t + half];
        }
        workgroupBarrier();
    }
}

// ---- input gradient ------------------------------------------------------------------------

// The input pixel of one dY_cols column.
struct Pixel {
    valid: bool,
    // Index of dy[n, g*cout_g, 0, 0].
    base: u32,
    // ih + ph and iw + pw: the padded-image coordinate.
    ihp: i32,
    iwp: i32,
};

fn decode_pixel(grp: u32, col: u32) -> Pixel {
    var px: Pixel;
    let plane = p.h * p.w;
    px.valid = col < p.batch * plane;
    let n = col / plane;
    let pix = col % plane;
    px.base = (n * p.cout + grp * p.cout_g) * p.oh * p.ow;
    px.ihp = i32(pix / p.w + p.ph);
    px.iwp = i32(pix % p.w + p.pw);
    return px;
}

// dY_cols(kidx, pixel): the gradient of the output that tap kidx = (co, ki, kj) produced from
// this pixel, or 0 when no output position reads it through that tap.
fn dy_cols_entry(px: Pixel, kidx: u32, kdim: u32) -> f32 {
    if (!px.valid || kidx >= kdim) { return 0.0; }
    let taps = p.kh * p.kw;
    let co = kidx / taps;
    let tap = kidx % taps;
    let th = px.ihp - i32((tap / p.kw) * p.dh);
    let tw = px.iwp - i32((tap % p.kw) * p.dw);
    if (th < 0 || tw < 0) { return 0.0; }
    let oh = u32(th) / p.sh;
    let ow = u32(tw) / p.sw;
    if (oh * p.sh != u32(th) || ow * p.sw != u32(tw) || oh >= p.oh || ow >= p.ow) { return 0.0; }
    return src_b[px.base + (co * p.oh + oh) * p.ow + ow];
}

fn load_next_dx(grp: u32, row0: u32, k0: u32, t: u32, px: Pixel) {
    let taps = p.kh * p.kw;
    let kdim = p.cout_g * taps;
    for (var r = 0u; r < 4u; r++) {
        // W_g^T(ci, (co, tap)) = w[g*cout_g + co, ci, tap]; consecutive threads walk the taps.
        let ci = row0 + t / 16u + 16u * r;
        let ka = k0 + t % 16u;
        var va = 0.0;
        if (ci < p.cin_g && ka < kdim) {
            va = src_a[((grp * p.cout_g + ka / taps) * p.cin_g + ci) * taps + ka % taps];
        }
        next_a[r] = va;
        next_b[r] = dy_cols_entry(px, k0 + t / 64u + 4u * r, kdim);
    }
}

// A walks K across threads, B walks N (same layout as conv2d.wgsl's forward).
fn store_next_kn(t: u32) {
    for (var r = 0u; r < 4u; r++) {
        let i = t / 16u + 16u * r;
        tile_a[(t % 16u) * 16u + i / 4u][i % 4u] = next_a[r];
        let j = t % 64u;
        tile_b[(t / 64u + 4u * r) * 16u + j / 4u][j % 4u] = next_b[r];
    }
}

@compute @workgroup_size(16, 16)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let plane = p.h * p.w;
    let ncols = p.batch * plane;
    let tiles_n = (ncols + TILE - 1u) / TILE;
    let tiles_m = (p.cin_g + TILE - 1u) / TILE;
    let per_group = tiles_n * tiles_m;
    let id = wid.x + wid.y * nwg.x;
    let grp = id / per_group;
    if (grp >= p.groups) { return; }
    let row0 = (id % per_group) / tiles_n * TILE;
    let col0 = id % tiles_n * TILE;
    let t = lid.y * 16u + lid.x;
    let px = decode_pixel(grp, col0 + t % 64u);

    acc = array<vec4<f32>, 4>();
    let steps = (p.cout_g * p.kh * p.kw + TILE_K - 1u) / TILE_K;
    load_next_dx(grp, row0, 0u, t, px);
    for (var s = 0u; s < steps; s++) {
        store_next_kn(t);
        workgroupBarrier();
        if (s + 1u < steps) {
            load_next_dx(grp, row0, (s + 1u) * TILE_K, t, px);
        }
        multiply_tiles(lid.x, lid.y);
        workgroupBarrier();
    }

    for (var q = 0u; q < 4u; q++) {
        let col = col0 + 4u * lid.x + q;
        if (col >= ncols) { break; }
        let n = col / plane;
        let pix = col % plane;
        for (var r = 0u; r < 4u; r++) {
            let ci = row0 + 4u * lid.y + r;
            if (ci >= p.cin_g) { break; }
            dst[(n * p.cin + grp * p.cin_g + ci) * plane + pix] = acc[r][q];
        }
    }
}

// ---- weight gradient -----------------------------------------------------------------------

// Thread t's r-th column of the X_cols^T slab: (ci, ki, kj) pre-decoded, since a thread loads
// the same 4 columns at every K step.
var<private> col_valid: array<bool, 4>;
var<private> col_plane: array<u32, 4>;
var<private> col_dh: array<i32, 4>;
var<private> col_dw: array<i32, 4>;

fn load_next_dw(grp: u32, row0: u32, k0: u32, k_end: u32, t: u32) {
    // Both slabs walk K (output positions, contiguous in dy and nearby in x) across threads,
    // so one decode of the position serves all 8 loads.
    let q = k0 + t % 16u;
    let plane = p.oh * p.ow;
    let n = q / plane;
    let pix = q % plane;
    let in_range = q < k_end;
    let ih0 = i32((pix / p.ow) * p.sh) - i32(p.ph);
    let iw0 = i32((pix % p.ow) * p.sw) - i32(p.pw);
    let xbase = (n * p.cin + grp * p.cin_g) * p.h * p.w;
    for (var r = 0u; r < 4u; r++) {
        let co = row0 + t / 16u + 16u * r;
        var va = 0.0;
        if (in_range && co < p.cout_g) {
            va = src_a[(n * p.cout + grp * p.cout_g + co) * plane + pix];
        }
        next_a[r] = va;
        var vb = 0.0;
        let ih = ih0 + col_dh[r];
        let iw = iw0 + col_dw[r];
        if (in_range && col_valid[r] && ih >= 0 && iw >= 0 && ih < i32(p.h) && iw < i32(p.w)) {
            vb = src_b[xbase + col_plane[r] + u32(ih) * p.w + u32(iw)];
        }
        next_b[r] = vb;
    }
}

// Both slabs walk K across threads.
fn store_next_kk(t: u32) {
    let kk = t % 16u;
    for (var r = 0u; r < 4u; r++) {
        let i = t / 16u + 16u * r;
        tile_a[kk * 16u + i / 4u][i % 4u] = next_a[r];
        tile_b[kk * 16u + i / 4u][i % 4u] = next_b[r];
    }
}

@compute @workgroup_size(16, 16)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let taps = p.kh * p.kw;
    let ncols = p.cin_g * taps;
    let tiles_n = (ncols + TILE - 1u) / TILE;
    let tiles_m = (p.cout_g + TILE - 1u) / TILE;
    let per_group = tiles_n * tiles_m;
    let id = wid.x + wid.y * nwg.x;
    let grp = (id / per_group) % p.groups;
    let split = id / per_group / p.groups;
    if (split >= p.splits) { return; }
    let row0 = (id % per_group) / tiles_n * TILE;
    let col0 = id % tiles_n * TILE;
    let t = lid.y * 16u + lid.x;
    for (var r = 0u; r < 4u; r++) {
        let j = col0 + t / 16u + 16u * r;
        let tap = j % taps;
        col_valid[r] = j < ncols;
        col_plane[r] = (j / taps) * p.h * p.w;
        col_dh[r] = i32((tap / p.kw) * p.dh);
        col_dw[r] = i32((tap % p.kw) * p.dw);
    }

    let kdim = p.batch * p.oh * p.ow;
    let k_begin = split * p.k_split;
    let k_end = min(k_begin + p.k_split, kdim);
    acc = array<vec4<f32>, 4>();
    let steps = (k_end - k_begin + TILE_K - 1u) / TILE_K;
    load_next_dw(grp, row0, k_begin, k_end, t);
    for (var s = 0u; s < steps; s++) {
        store_next_kk(t);
        workgroupBarrier();
        if (s + 1u < steps) {
            load_next_dw(grp, row0, k_begin + (s + 1u) * TILE_K, k_end, t);
        }
        multiply_tiles(lid.x, lid.y);
        workgroupBarrier();
    }

    for (var r = 0u; r < 4u; r++) {
        let co = row0 + 4u * lid.y + r;
        if (co >= p.cout_g) { break; }
        for (var q = 0u; q < 4u; q++) {
            let j = col0 + 4u * lid.x + q;
            if (j >= ncols) { break; }
            dst[split * p.len + (grp * p.cout_g + co) * ncols + j] = acc[r][q];
        }
    }
}

// dw[i] = sum over s of partials[s * len + i], in order of s.
@compute @workgroup_size(256)
fn reduce_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        s += src_a[k * p.len + i];
    }
    dst[i] = s;
}

// ---- bias gradient -------------------------------------------------------------------------

@compute @workgroup_size(256)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x + wid.y * nwg.x;
    if (c >= p.cout) { return; }
    let plane = p.oh * p.ow;
    var s = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let base = (n * p.cout + c) * plane;
        for (var i = lid.x; i < plane; i += 256u) {
            s += src_a[base + i];
        }
    }
    reduce_partial(lid.x, s);
    if (lid.x == 0u) {
        dst[c] = partial[0];
    }
}

// ---- small groups (direct kernels) --------------------------------------------------------

// dx[n, ci, ih, iw]: the sum, over the cout_g output channels of ci's group and the taps
// (ki, kj) through which an output position reads this pixel, of w * dy.
@compute @workgroup_size(256)
fn direct_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    let plane = p.h * p.w;
    if (idx >= p.batch * p.cin * plane) { return; }
    let nc = idx / plane;
    let pix = idx % plane;
    let n = nc / p.cin;
    let ci = nc % p.cin;
    let co0 = ci / p.cin_g * p.cout_g;
    let ihp = i32(pix / p.w + p.ph);
    let iwp = i32(pix % p.w + p.pw);
    var s = 0.0;
    for (var c = 0u; c < p.cout_g; c++) {
        let wbase = ((co0 + c) * p.cin_g + ci % p.cin_g) * p.kh * p.kw;
        let dybase = (n * p.cout + co0 + c) * p.oh * p.ow;
        for (var ki = 0u; ki < p.kh; ki++) {
            let th = ihp - i32(ki * p.dh);
            if (th < 0) { break; }
            let oh = u32(th) / p.sh;
            if (oh * p.sh != u32(th) || oh >= p.oh) { continue; }
            for (var kj = 0u; kj < p.kw; kj++) {
                let tw = iwp - i32(kj * p.dw);
                if (tw < 0) { break; }
                let ow = u32(tw) / p.sw;
                if (ow * p.sw != u32(tw) || ow >= p.ow) { continue; }
                s = fma(src_a[wbase + ki * p.kw + kj], src_b[dybase + oh * p.ow + ow], s);
            }
        }
    }
    dst[idx] = s;
}

// One workgroup per weight (co, ci, ki, kj): the sum over the batch and output positions of
// dy[n, co, oh, ow] * x[n, group's first channel + ci, ih, iw], reduced like the bias.
@compute @workgroup_size(256)
fn direct_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
    let taps = p.kh * p.kw;
    let id = wid.x + wid.y * nwg.x;
    if (id >= p.len) { return; }
    let co = id / (p.cin_g * taps);
    let ci = co / p.cout_g * p.cin_g + id / taps % p.cin_g;
    let tap = id % taps;
    let dh = i32((tap / p.kw) * p.dh) - i32(p.ph);
    let dw = i32((tap % p.kw) * p.dw) - i32(p.pw);
    let plane = p.oh * p.ow;
    var s = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let dybase = (n * p.cout + co) * plane;
        let xbase = (n * p.cin + ci) * p.h * p.w;
        for (var i = lid.x; i < plane; i += 256u) {
            let ih = i32((i / p.ow) * p.sh) + dh;
            let iw = i32((i % p.ow) * p.sw) + dw;
            if (ih >= 0 && iw >= 0 && ih < i32(p.h) && iw < i32(p.w)) {
                s = fma(src_a[dybase + i], src_b[xbase + u32(ih) * p.w + u32(iw)], s);
            }
        }
    }
    reduce_partial(lid.x, s);
    if (lid.x == 0u) {
        dst[id] = partial[0];
    }
}
