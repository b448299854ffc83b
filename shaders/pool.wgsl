// Max and average 2-D pooling over [batch, channels, in_h, in_w] arrays, PyTorch's semantics
// with ceil_mode = false (launchers in crates/gpu/src/pool.rs; what they compute is
// crates/spec/src/pool.rs). The launcher prepends invocation.wgsl.
//
// Forward kernels run one thread per output element, walking its input window; backward
// kernels are gathers, one thread per input element summing the dy of every output window that
// covers it, in increasing output order (the order in which the CPU kernel scatters), so there
// are no atomics and results are deterministic. Max pooling skips padded positions (padding
// acts as -infinity), keeps the first maximum in row-major window order and lets a NaN win; its
// argmax is `h * in_w + w` within the (sample, channel) plane. Average pooling counts padded
// zeros: every window divides by kh * kw.

struct PoolParams {
    // Threads that do work: output elements (forward) or input elements (backward).
    len: u32,
    in_h: u32, in_w: u32, out_h: u32, out_w: u32,
    // Window size, stride and padding, (height, width) each.
    kh: u32, kw: u32, sh: u32, sw: u32, ph: u32, pw: u32,
};

@group(0) @binding(0) var<uniform> p: PoolParams;
// Forward: x in, y out; backward: dy in, dx out.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Max pooling's argmax, written by the forward kernel and read by the backward one.
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(3) var<storage, read> argmax: array<u32>;

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

// What the forward kernels need of the input window of output element i, walked once in
// row-major order: the sum of its values, its first maximum (a NaN wins) and where that is.
struct WindowStats {
    sum: f32,
    max: f32,
    argmax: u32,
};

fn window_stats(i: u32) -> WindowStats {
    let plane_out = p.out_h * p.out_w;
    let o = i % plane_out;
    let rows = window(o / p.out_w, p.sh, p.ph, p.kh, p.in_h);
    let cols = window(o % p.out_w, p.sw, p.pw, p.kw, p.in_w);
    let base = i / plane_out * p.in_h * p.in_w;
    var s = WindowStats(0.0, src[base + rows.x * p.in_w + cols.x], rows.x * p.in_w + cols.x);
    for (var ih = rows.x; ih < rows.y; ih++) {
        for (var iw = cols.x; iw < cols.y; iw++) {
            let j = ih * p.in_w + iw;
            let v = src[base + j];
            s.sum += v;
            if (v > s.max || (is_nan(v) && !is_nan(s.max))) {
                s.max = v;
                s.argmax = j;
            }
        }
    }
    return s;
}

@compute @workgroup_size(WG)
fn max_forward(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= p.len) { return; }
    let s = window_stats(i);
    dst[i] = s.max;
    argmax_out[i] = s.argmax;
}

@compute @workgroup_size(WG)
fn avg_forward(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= p.len) { return; }
    dst[i] = window_stats(i).sum / f32(p.kh * p.kw);
}

// The output positions whose windows cover input element i: rows and columns [lo, hi), and the
// index in dy of their plane's first element.
struct Covering {
    rows: vec2<u32>,
    cols: vec2<u32>,
    base: u32,
};

fn covering_outputs(i: u32) -> Covering {
    let plane_in = p.in_h * p.in_w;
    let j = i % plane_in;
    return Covering(
        covering(j / p.in_w, p.sh, p.ph, p.kh, p.out_h),
        covering(j % p.in_w, p.sw, p.pw, p.kw, p.out_w),
        i / plane_in * p.out_h * p.out_w,
    );
}

@compute @workgroup_size(WG)
fn max_backward(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= p.len) { return; }
    let c = covering_outputs(i);
    let j = i % (p.in_h * p.in_w);
    var acc = 0.0;
    for (var oh = c.rows.x; oh < c.rows.y; oh++) {
        for (var ow = c.cols.x; ow < c.cols.y; ow++) {
            let o = c.base + oh * p.out_w + ow;
            if (argmax[o] == j) { acc += src[o]; }
        }
    }
    dst[i] = acc;
}

@compute @workgroup_size(WG)
fn avg_backward(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= p.len) { return; }
    let c = covering_outputs(i);
    let area = f32(p.kh * p.kw);
    var acc = 0.0;
    for (var oh = c.rows.x; oh < c.rows.y; oh++) {
        for (var ow = c.cols.x; ow < c.cols.y; ow++) {
            // dy / area per window, as the CPU kernel adds it.
            acc += src[c.base + oh * p.out_w + ow] / area;
        }
    }
    dst[i] = acc;
}
