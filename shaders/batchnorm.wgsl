// Batch normalization over x viewed as [n, c, hw], with statistics per channel.
//
// A channel's values are indexed t = sample * hw + position (t < m = n * hw). Per-channel sums
// run in two fixed-order stages and never use atomics, so results are bitwise deterministic:
// `*_partial` gives each (channel, chunk of CHUNK consecutive t) a workgroup that sums its chunk
// with a shared-memory tree, and `*_finalize` gives each channel a workgroup that sums the
// chunk partials the same way. The mean sums x - x0 (x0 = the channel's first value) so the
// partial sums stay small when the mean is large, and the variance is a second pass over
// (x - mean)^2: E[x^2] - E[x]^2 would lose everything to cancellation in f32.
//
// Optional weight and bias are flags in the uniform (bit 0: weight, bit 1: bias); without them
// the launcher binds a 1-element dummy buffer that is never read. Elementwise passes use one
// thread per element; workgroups beyond 65,535 fold into y, and the flat workgroup index is
// `wid.x + wid.y * num_workgroups.x`. Every launcher lives in crates/gpu/src/batchnorm.rs.

const WG: u32 = 256u;
// Values per workgroup of a `*_partial` pass; equals `CHUNK` in batchnorm.rs.
const CHUNK: u32 = 4096u;
const HAS_WEIGHT: u32 = 1u;
const HAS_BIAS: u32 = 2u;

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    // Chunks per channel: ceil(m / CHUNK).
    chunks: u32,
    // Elements of x (elementwise passes).
    len: u32,
    flags: u32,
    // n * hw as f32.
    m: f32,
    eps: f32,
};

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> sa: array<f32, 256>;
var<workgroup> sb: array<f32, 256>;

// Tree-sums sa and sb into element 0 (both, so one helper serves the passes that need one sum
// and the one that needs two). Call from uniform control flow after writing sa[lid], sb[lid].
fn reduce(lid: u32) {
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lid < s) {
            sa[lid] += sa[lid + s];
            sb[lid] += sb[lid + s];
        }
    }
    workgroupBarrier();
}

// Address in x of value t of channel ch.
fn at(ch: u32, t: u32) -> u32 {
    return (t / p.hw * p.c + ch) * p.hw + t % p.hw;
}

fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// ---- mean: partial sums of x - x0, then mean = x0 + sum / m -------------------------------

@group(0) @binding(1) var<storage, read> mp_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mp_part: array<f32>;

@compute @workgroup_size(256)
fn mean_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    // g = ch * chunks + chunk, which is also where the partial goes.
    let g = flat_workgroup(wid, nwg);
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (g >= p.c * p.chunks) { return; }
    let ch = g / p.chunks;
    let x0 = mp_x[ch * p.hw];
    let start = (g % p.chunks) * CHUNK;
    let end = min(start + CHUNK, p.n * p.hw);
    var acc = 0.0;
    for (var t = start + lid.x; t < end; t += WG) {
        acc += mp_x[at(ch, t)] - x0;
    }
    sa[lid.x] = acc;
    sb[lid.x] = 0.0;
    reduce(lid.x);
    if (lid.x == 0u) { mp_part[g] = sa[0]; }
}

@group(0) @binding(1) var<storage, read> mf_x: array<f32>;
@group(0) @binding(2) var<storage, read> mf_part: array<f32>;
@group(0) @binding(3) var<storage, read_write> mf_mean: array<f32>;

@compute @workgroup_size(256)
fn mean_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let ch = flat_workgroup(wid, nwg);
    if (ch >= p.c) { return; }
    var acc = 0.0;
    for (var k = lid.x; k < p.chunks; k += WG) {
        acc += mf_part[ch * p.chunks + k];
    }
    sa[lid.x] = acc;
    sb[lid.x] = 0.0;
    reduce(lid.x);
    if (lid.x == 0u) { mf_mean[ch] = mf_x[ch * p.hw] + sa[0] / p.m; }
}

// ---- biased variance: partial sums of (x - mean)^2, then var and invstd -------------------

@group(0) @binding(1) var<storage, read> vp_x: array<f32>;
@group(0) @binding(2) var<storage, read> vp_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> vp_part: array<f32>;

@compute @workgroup_size(256)
fn var_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_workgroup(wid, nwg);
    if (g >= p.c * p.chunks) { return; }
    let ch = g / p.chunks;
    let mean = vp_mean[ch];
    let start = (g % p.chunks) * CHUNK;
    let end = min(start + CHUNK, p.n * p.hw);
    var acc = 0.0;
    for (var t = start + lid.x; t < end; t += WG) {
        let d = vp_x[at(ch, t)] - mean;
        acc += d * d;
    }
    sa[lid.x] = acc;
    sb[lid.x] = 0.0;
    reduce(lid.x);
    if (lid.x == 0u) { vp_part[g] = sa[0]; }
}

@group(0) @binding(1) var<storage, read> vf_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> vf_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> vf_invstd: array<f32>;

@compute @workgroup_size(256)
fn var_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let ch = flat_workgroup(wid, nwg);
    if (ch >= p.c) { return; }
    var acc = 0.0;
    for (var k = lid.x; k < p.chunks; k += WG) {
        acc += vf_part[ch * p.chunks + k];
    }
    sa[lid.x] = acc;
    sb[lid.x] = 0.0;
    reduce(lid.x);
    if (lid.x == 0u) {
        let v = sa[0] / p.m;
        vf_var[ch] = v;
        // 1 / sqrt rather than inverseSqrt, whose precision WGSL leaves looser.
        vf_invstd[ch] = 1.0 / sqrt(v + p.eps);
    }
}

// ---- invstd of the running variance (eval), one thread per channel ------------------------

@group(0) @binding(1) var<storage, read> ei_var: array<f32>;
@group(0) @binding(2) var<storage, read_write> ei_invstd: array<f32>;

@compute @workgroup_size(256)
fn eval_invstd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let ch = flat_workgroup(wid, nwg) * WG + lid.x;
    if (ch >= p.c) { return; }
    ei_invstd[ch] = 1.0 / sqrt(ei_var[ch] + p.eps);
}

// ---- y = (x - mean) * invstd * weight + bias ----------------------------------------------

@group(0) @binding(1) var<storage, read> nz_x: array<f32>;
@group(0) @binding(2) var<storage, read> nz_mean: array<f32>;
@group(0) @binding(3) var<storage, read> nz_invstd: array<f32>;
@group(0) @binding(4) var<storage, read> nz_weight: array<f32>;
@group(0) @binding(5) var<storage, read> nz_bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> nz_y: array<f32>;

@compute @workgroup_size(256)
fn apply_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_workgroup(wid, nwg) * WG + lid.x;
    if (i >= p.len) { return; }
    let ch = i / p.hw % p.c;
    var scale = nz_invstd[ch];
    if ((p.flags & HAS_WEIGHT) != 0u) { scale *= nz_weight[ch]; }
    var shift = 0.0;
    if ((p.flags & HAS_BIAS) != 0u) { shift = nz_bias[ch]; }
    nz_y[i] = (nz_x[i] - nz_mean[ch]) * scale + shift;
}

// ---- backward: per-channel sum(dy) and sum(dy * (x - mean)), then dbias and dweight -------

@group(0) @binding(1) var<storage, read> gp_x: array<f32>;
@group(0) @binding(2) var<storage, read> gp_dy: array<f32>;
@group(0) @binding(3) var<storage, read> gp_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> gp_part_dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> gp_part_dyx: array<f32>;

@compute @workgroup_size(256)
fn grad_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_workgroup(wid, nwg);
    if (g >= p.c * p.chunks) { return; }
    let ch = g / p.chunks;
    let mean = gp_mean[ch];
    let start = (g % p.chunks) * CHUNK;
    let end = min(start + CHUNK, p.n * p.hw);
    var s_dy = 0.0;
    var s_dyx = 0.0;
    for (var t = start + lid.x; t < end; t += WG) {
        let j = at(ch, t);
        let d = gp_dy[j];
        s_dy += d;
        s_dyx += d * (gp_x[j] - mean);
    }
    sa[lid.x] = s_dy;
    sb[lid.x] = s_dyx;
    reduce(lid.x);
    if (lid.x == 0u) {
        gp_part_dy[g] = sa[0];
        gp_part_dyx[g] = sb[0];
    }
}

@group(0) @binding(1) var<storage, read> gf_part_dy: array<f32>;
@group(0) @binding(2) var<storage, read> gf_part_dyx: array<f32>;
@group(0) @binding(3) var<storage, read> gf_invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> gf_dweight: array<f32>;
@group(0) @binding(5) var<storage, read_write> gf_dbias: array<f32>;

@compute @workgroup_size(256)
fn grad_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let ch = flat_workgroup(wid, nwg);
    if (ch >= p.c) { return; }
    var s_dy = 0.0;
    var s_dyx = 0.0;
    for (var k = lid.x; k < p.chunks; k += WG) {
        s_dy += gf_part_dy[ch * p.chunks + k];
        s_dyx += gf_part_dyx[ch * p.chunks + k];
    }
    sa[lid.x] = s_dy;
    sb[lid.x] = s_dyx;
    reduce(lid.x);
    if (lid.x == 0u) {
        gf_dbias[ch] = sa[0];
        // invstd factored out of the sum, as in the CPU kernel.
        gf_dweight[ch] = sb[0] * gf_invstd[ch];
    }
}

// ---- dx through the batch statistics (training):
//      dx = weight * invstd * (dy - dbias / m - (x - mean) * invstd * dweight / m) -----------

@group(0) @binding(1) var<storage, read> dt_x: array<f32>;
@group(0) @binding(2) var<storage, read> dt_dy: array<f32>;
@group(0) @binding(3) var<storage, read> dt_mean: array<f32>;
@group(0) @binding(4) var<storage, read> dt_invstd: array<f32>;
@group(0) @binding(5) var<storage, read> dt_weight: array<f32>;
@group(0) @binding(6) var<storage, read> dt_dweight: array<f32>;
@group(0) @binding(7) var<storage, read> dt_dbias: array<f32>;
@group(0) @binding(8) var<storage, read_write> dt_dx: array<f32>;

@compute @workgroup_size(256)
fn dx_train(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_workgroup(wid, nwg) * WG + lid.x;
    if (i >= p.len) { return; }
    let ch = i / p.hw % p.c;
    let inv = dt_invstd[ch];
    var a = inv;
    if ((p.flags & HAS_WEIGHT) != 0u) { a *= dt_weight[ch]; }
    let mean_dy = dt_dbias[ch] / p.m;
    let k = inv * dt_dweight[ch] / p.m;
    dt_dx[i] = a * (dt_dy[i] - mean_dy - (dt_x[i] - dt_mean[ch]) * k);
}

// ---- dx with constant statistics (eval): dx = dy * weight * invstd ------------------------

@group(0) @binding(1) var<storage, read> de_dy: array<f32>;
@group(0) @binding(2) var<storage, read> de_invstd: array<f32>;
@group(0) @binding(3) var<storage, read> de_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> de_dx: array<f32>;

@compute @workgroup_size(256)
fn dx_eval(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_workgroup(wid, nwg) * WG + lid.x;
    if (i >= p.len) { return; }
    let ch = i / p.hw % p.c;
    var a = de_invstd[ch];
    if ((p.flags & HAS_WEIGHT) != 0u) { a *= de_weight[ch]; }
    de_dx[i] = de_dy[i] * a;
}
