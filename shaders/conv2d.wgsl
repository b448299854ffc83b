// 2-D convolution forward over NCHW arrays, as an implicit GEMM.
//
// For one group, a convolution is the matrix product Y_g = W_g @ X_cols:
//   W_g    [M = cout_g, K = cin_g * kh * kw]   the group's weights, row-major as stored;
//   X_cols [K, N = batch * out_h * out_w]      column (n, oh, ow) holds every input pixel that
//                                              output position sees (0 where it is padding).
// im2col would copy X_cols into memory first: kh*kw times the input, hundreds of MB at CIFAR
// sizes. An implicit GEMM never builds it: when the tiled GEMM copies a 16x64 slab of X_cols
// into workgroup memory, each thread computes which input pixel (or padding zero) an entry
// stands for and reads it straight from x. Everything else is the tiled GEMM of matmul.wgsl:
// 64x64 output tile per workgroup of 16x16 threads, a 4x4 micro-tile per thread, K in steps of
// 16 through workgroup memory with the next step's loads issued before the current step's
// arithmetic. The group index is part of the flat workgroup index, so all groups run in one
// dispatch.
//
// Column j of X_cols decodes to (n, oh, ow) and row kidx to (ci, ki, kj); the entry is
// x[n, g*cin_g + ci, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw] when that is inside the image.
// A thread always loads the same column of the slab, so it decodes (n, oh, ow) once.
//
// Convolutions with small groups (ResNeXt's 4 or 8 channels per group; depthwise, 1) would
// leave most of the 64 tile rows idle, so they have a direct kernel (`direct_forward`): one
// thread per output element, looping over its group's input channels and the kh*kw taps.

const TILE: u32 = 64u;

// true: add bias[channel] to every output (a specialized pipeline).
override HAS_BIAS: bool = false;

// ConvParams comes from conv_params.wgsl, prepended by the launcher.

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
// Bound to `wt` when HAS_BIAS is false.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// What a thread needs to know about the X_cols column it loads.
struct Column {
    valid: bool,
    // Index of x[n, g*cin_g, 0, 0].
    base: u32,
    // Top-left input coordinate of the window, oh*sh - ph and ow*sw - pw (may be negative).
    ih0: i32,
    iw0: i32,
};

fn decode_column(grp: u32, col: u32) -> Column {
    var c: Column;
    let plane = p.oh * p.ow;
    c.valid = col < p.batch * plane;
    let n = col / plane;
    let pix = col % plane;
    c.base = (n * p.cin + grp * p.cin_g) * p.h * p.w;
    c.ih0 = i32((pix / p.ow) * p.sh) - i32(p.ph);
    c.iw0 = i32((pix % p.ow) * p.sw) - i32(p.pw);
    return c;
}

// X_cols(kidx, column), 0 outside the image.
fn im2col_entry(c: Column, kidx: u32, kdim: u32) -> f32 {
    if (!c.valid || kidx >= kdim) { return 0.0; }
    let taps = p.kh * p.kw;
    let ci = kidx / taps;
    let tap = kidx % taps;
    let ih = c.ih0 + i32((tap / p.kw) * p.dh);
    let iw = c.iw0 + i32((tap % p.kw) * p.dw);
    if (ih < 0 || iw < 0 || ih >= i32(p.h) || iw >= i32(p.w)) { return 0.0; }
    return x[c.base + ci * p.h * p.w + u32(ih) * p.w + u32(iw)];
}

fn load_next(grp: u32, row0: u32, k0: u32, t: u32, c: Column) {
    let kdim = p.cin_g * p.kh * p.kw;
    for (var r = 0u; r < 4u; r++) {
        // Weights: rows are contiguous along K, so neighbouring threads walk K.
        let row = row0 + t / 16u + 16u * r;
        let ka = k0 + t % 16u;
        var va = 0.0;
        if (row < p.cout_g && ka < kdim) {
            va = wt[(grp * p.cout_g + row) * kdim + ka];
        }
        next_a[r] = va;
        // Input: neighbouring threads take neighbouring output pixels (nearby addresses).
        next_b[r] = im2col_entry(c, k0 + t / 64u + 4u * r, kdim);
    }
}

fn store_next(t: u32) {
    for (var r = 0u; r < 4u; r++) {
        let i = t / 16u + 16u * r;
        tile_a[(t % 16u) * 16u + i / 4u][i % 4u] = next_a[r];
        let j = t % 64u;
        tile_b[(t / 64u + 4u * r) * 16u + j / 4u][j % 4u] = next_b[r];
    }
}

@compute @workgroup_size(16, 16)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let plane = p.oh * p.ow;
    let ncols = p.batch * plane;
    let tiles_n = (ncols + TILE - 1u) / TILE;
    let tiles_m = (p.cout_g + TILE - 1u) / TILE;
    let per_group = tiles_n * tiles_m;
    let id = wid.x + wid.y * nwg.x;
    let grp = id / per_group;
    if (grp >= p.groups) { return; }
    let row0 = (id % per_group) / tiles_n * TILE;
    let col0 = id % tiles_n * TILE;
    let t = lid.y * 16u + lid.x;
    let column = decode_column(grp, col0 + t % 64u);

    acc = array<vec4<f32>, 4>();
    let kdim = p.cin_g * p.kh * p.kw;
    let steps = (kdim + TILE_K - 1u) / TILE_K;
    load_next(grp, row0, 0u, t, column);
    for (var s = 0u; s < steps; s++) {
        store_next(t);
        workgroupBarrier();
        if (s + 1u < steps) {
            load_next(grp, row0, (s + 1u) * TILE_K, t, column);
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
            let row = row0 + 4u * lid.y + r;
            if (row >= p.cout_g) { break; }
            let co = grp * p.cout_g + row;
            var v = acc[r][q];
            if (HAS_BIAS) {
                v += bias[co];
            }
            y[(n * p.cout + co) * plane + pix] = v;
        }
    }
}

// Small groups: output channel co sees the cin_g input channels of its group, from channel
// co / cout_g * cin_g on. One thread per output element sums them and the taps in the order
// (ci, ki, kj), the GEMM's K order.
@compute @workgroup_size(256)
fn direct_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    let plane = p.oh * p.ow;
    if (idx >= p.batch * p.cout * plane) { return; }
    let nc = idx / plane;
    let pix = idx % plane;
    let n = nc / p.cout;
    let co = nc % p.cout;
    let ci0 = co / p.cout_g * p.cin_g;
    let ih0 = i32((pix / p.ow) * p.sh) - i32(p.ph);
    let iw0 = i32((pix % p.ow) * p.sw) - i32(p.pw);
    var s = 0.0;
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let xbase = (n * p.cin + ci0 + ci) * p.h * p.w;
        let wbase = (co * p.cin_g + ci) * p.kh * p.kw;
        for (var ki = 0u; ki < p.kh; ki++) {
            let ih = ih0 + i32(ki * p.dh);
            if (ih < 0 || ih >= i32(p.h)) { continue; }
            for (var kj = 0u; kj < p.kw; kj++) {
                let iw = iw0 + i32(kj * p.dw);
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
