// Max and average 2-D pooling over [batch, channels, in_h, in_w] arrays, PyTorch's semantics
// with ceil_mode = false (launchers in crates/gpu/src/pool.rs, reference in
// crates/cpu/src/pool.rs).
//
// Forward kernels run one thread per output element; backward kernels are gathers, one thread
// per input element summing the dy of every output window that covers it, in increasing output
// order (the order in which the CPU kernel scatters), so there are no atomics and results are
// deterministic. Max pooling skips padded positions (padding acts as -infinity), keeps the first
// maximum in row-major window order and lets a NaN win; its argmax is `h * in_w + w` within the
// (sample, channel) plane. Average pooling counts padded zeros: every window divides by kh * kw.
// Workgroups beyond 65,535 fold into y; the flat index is `(wid.x + wid.y * nwg.x) * 256 + lid.x`.

struct Params {
    // Threads that do work: output elements (forward) or input elements (backward).
    len: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    _pad: u32,
};

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// Bit test rather than `v != v`, which fast-math compilers may fold to false.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Real input rows (or columns) [lo, hi) of output position o, padding cut off. The launcher
// validates pad <= k / 2, so o * stride + k > pad and every window holds a real pixel.
fn window(o: u32, stride: u32, pad: u32, k: u32, len: u32) -> vec2<u32> {
    let start = o * stride;
    return vec2<u32>(max(start, pad) - pad, min(start + k - pad, len));
}

// Output positions [lo, hi) whose windows cover input position i.
fn covering(i: u32, stride: u32, pad: u32, k: u32, out_len: u32) -> vec2<u32> {
    // In padded coordinates q, output o covers o * stride <= q < o * stride + k.
    let q = i + pad;
    let lo = select(0u, (q - k) / stride + 1u, q >= k);
    let hi = min(q / stride + 1u, out_len);
    return vec2<u32>(lo, max(lo, hi));
}

// ---- max pooling -------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> mf_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mf_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> mf_arg: array<u32>;

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) { return; }
    let plane_out = p.out_h * p.out_w;
    let o = i % plane_out;
    let rows = window(o / p.out_w, p.sh, p.ph, p.kh, p.in_h);
    let cols = window(o % p.out_w, p.sw, p.pw, p.kw, p.in_w);
    let base = i / plane_out * p.in_h * p.in_w;
    var best_j = rows.x * p.in_w + cols.x;
    var best = mf_x[base + best_j];
    for (var ih = rows.x; ih < rows.y; ih++) {
        for (var iw = cols.x; iw < cols.y; iw++) {
            let j = ih * p.in_w + iw;
            let v = mf_x[base + j];
            if (v > best || (is_nan(v) && !is_nan(best))) {
                best = v;
                best_j = j;
            }
        }
    }
    mf_y[i] = best;
    mf_arg[i] = best_j;
}

@group(0) @binding(1) var<storage, read> mb_arg: array<u32>;
@group(0) @binding(2) var<storage, read> mb_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> mb_dx: array<f32>;

@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) { return; }
    let plane_in = p.in_h * p.in_w;
    let j = i % plane_in;
    let rows = covering(j / p.in_w, p.sh, p.ph, p.kh, p.out_h);
    let cols = covering(j % p.in_w, p.sw, p.pw, p.kw, p.out_w);
    let base = i / plane_in * p.out_h * p.out_w;
    var acc = 0.0;
    for (var oh = rows.x; oh < rows.y; oh++) {
        for (var ow = cols.x; ow < cols.y; ow++) {
            let o = base + oh * p.out_w + ow;
            if (mb_arg[o] == j) { acc += mb_dy[o]; }
        }
    }
    mb_dx[i] = acc;
}

// ---- average pooling ---------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> af_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> af_y: array<f32>;

@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) { return; }
    let plane_out = p.out_h * p.out_w;
    let o = i % plane_out;
    let rows = window(o / p.out_w, p.sh, p.ph, p.kh, p.in_h);
    let cols = window(o % p.out_w, p.sw, p.pw, p.kw, p.in_w);
    let base = i / plane_out * p.in_h * p.in_w;
    var acc = 0.0;
    for (var ih = rows.x; ih < rows.y; ih++) {
        for (var iw = cols.x; iw < cols.y; iw++) {
            acc += af_x[base + ih * p.in_w + iw];
        }
    }
    af_y[i] = acc / f32(p.kh * p.kw);
}

@group(0) @binding(1) var<storage, read> ab_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> ab_dx: array<f32>;

@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) { return; }
    let plane_in = p.in_h * p.in_w;
    let j = i % plane_in;
    let rows = covering(j / p.in_w, p.sh, p.ph, p.kh, p.out_h);
    let cols = covering(j % p.in_w, p.sw, p.pw, p.kw, p.out_w);
    let base = i / plane_in * p.out_h * p.out_w;
    let area = f32(p.kh * p.kw);
    var acc = 0.0;
    for (var oh = rows.x; oh < rows.y; oh++) {
        for (var ow = cols.x; ow < cols.y; ow++) {
            // dy / area per window, as the CPU kernel adds it.
            acc += ab_dy[base + oh * p.out_w + ow] / area;
        }
    }
    ab_dx[i] = acc;
}
