// Batch normalization over x viewed as [n, c, hw], with statistics per channel. The launcher
// prepends invocation.wgsl and workgroup_reduce.wgsl; every launcher lives in
// crates/gpu/src/batchnorm.rs.
//
// A channel's values are indexed t = sample * hw + position (t < m = n * hw). Per-channel sums
// run in two fixed-order stages and never use atomics, so results are bitwise deterministic:
// `*_partial` gives each (channel, chunk of CHUNK consecutive t) a workgroup that sums its chunk
// with workgroup_reduce, and `*_finalize` gives each channel a workgroup that sums the chunk
// partials the same way. The mean sums x - x0 (x0 = the channel's first value) so the partial
// sums stay small when the mean is large, and the variance is a second pass over (x - mean)^2:
// E[x^2] - E[x]^2 would lose everything to cancellation in f32.
//
// Optional weight and bias are flags in the uniform (bit 0: weight, bit 1: bias); without them
// the launcher binds a 1-element dummy buffer that is never read. The elementwise passes use the
// partial passes' workgroups too, one per (channel, chunk), so each thread reads its channel's
// statistics once and walks its values without dividing (see Walk).
//
// Each buffer has one binding slot whatever the kernel (`slot` in batchnorm.rs names them the
// same way); a kernel binds only the few it uses. A per-channel statistic is written by one
// kernel and read by later ones, so its slot has two declarations, `*_out` for the writer.

// Values per workgroup of a `*_partial` pass; equals `CHUNK` in batchnorm.rs.
const CHUNK: u32 = 4096u;
const HAS_WEIGHT: u32 = 1u;
const HAS_BIAS: u32 = 2u;

struct BnParams {
    n: u32, c: u32, hw: u32,
    // Chunks per channel: ceil(m / CHUNK).
    chunks: u32,
    // Elements of x (elementwise passes), and HAS_WEIGHT | HAS_BIAS.
    len: u32, flags: u32,
    // n * hw as f32, and the epsilon added to the variance.
    m: f32, eps: f32,
};

@group(0) @binding(0) var<uniform> p: BnParams;


// A `*_partial` workgroup's work: its flat index g = ch * chunks + chunk (also where its partial
// sum goes), the channel, and this thread's first value t and the end of the chunk; the thread
// takes every RWG-th value from there. `valid` is false past the last chunk of the last channel,
// the same for the whole workgroup.
struct Chunk {
    valid: bool,
    g: u32,
    ch: u32,
    first: u32,
    end: u32,
};

fn chunk_of(inv: Invocation) -> Chunk {
    let g = workgroup_index(inv);
    let start = (g % p.chunks) * CHUNK;
    let end = min(start + CHUNK, p.n * p.hw);
    return Chunk(g < p.c * p.chunks, g, g / p.chunks, start + inv.lid.x, end);
}

// A thread's walk over its values of a chunk: t = first, first + RWG, ... < end, with the
// address of t, (sample * c + ch) * hw + pos, carried along rather than divided out for each
// value (integer division is a loop over the lanes on a CPU adapter). RWG = q * hw + r, so one
// step adds q planes of every channel plus r positions, and one plane more when pos wraps.
struct Walk {
    t: u32,
    pos: u32,
    at: u32,
    // r, and the address step without a wrap: q * c * hw + r.
    r: u32,
    step: u32,
};

fn walk_start(chunk: Chunk) -> Walk {
    let pos = chunk.first % p.hw;
    let at = (chunk.first / p.hw * p.c + chunk.ch) * p.hw + pos;
    let r = RWG % p.hw;
    return Walk(chunk.first, pos, at, r, RWG / p.hw * p.c * p.hw + r);
}

fn walk_next(w: ptr<function, Walk>) {
    (*w).t += RWG;
    (*w).pos += (*w).r;
    (*w).at += (*w).step;
    if ((*w).pos >= p.hw) {
        (*w).pos -= p.hw;
        (*w).at += (p.c - 1u) * p.hw;
    }
}

// ---- buffers ------------------------------------------------------------------------------

// Inputs.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
// Per-channel weight and bias (or 1-element dummies when absent).
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// Per-channel statistics and parameter gradients.
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read> variance: array<f32>;
@group(0) @binding(6) var<storage, read_write> variance_out: array<f32>;
@group(0) @binding(7) var<storage, read> invstd: array<f32>;
@group(0) @binding(7) var<storage, read_write> invstd_out: array<f32>;
@group(0) @binding(8) var<storage, read> dweight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dweight_out: array<f32>;
@group(0) @binding(9) var<storage, read> dbias: array<f32>;
@group(0) @binding(9) var<storage, read_write> dbias_out: array<f32>;
// The chunk partial sums of the two-stage reductions; `part2` is the second sum of grad_*.
@group(0) @binding(10) var<storage, read> part: array<f32>;
@group(0) @binding(10) var<storage, read_write> part_out: array<f32>;
@group(0) @binding(11) var<storage, read> part2: array<f32>;
@group(0) @binding(11) var<storage, read_write> part2_out: array<f32>;
// The output of the elementwise passes: y or dx.
@group(0) @binding(12) var<storage, read_write> out: array<f32>;

// Sums the workgroup's values and stores the chunk's partial sum.
fn store_partial(chunk: Chunk, acc: f32, lid: u32) {
    let s = workgroup_sum(acc, lid);
    if (lid == 0u) { part_out[chunk.g] = s; }
}

// Both sums of a pair over the workgroup.
fn workgroup_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    return vec2<f32>(workgroup_sum(v.x, lid), workgroup_sum(v.y, lid));
}

// This thread's share of the sum of channel ch's chunk partials in `part`.
fn part_share(ch: u32, lid: u32) -> f32 {
    var acc = 0.0;
    for (var k = lid; k < p.chunks; k += RWG) {
        acc += part[ch * p.chunks + k];
    }
    return acc;
}

// The normalized value's factor in channel ch: invstd, times the weight when there is one.
fn scale(ch: u32) -> f32 {
    var s = invstd[ch];
    if ((p.flags & HAS_WEIGHT) != 0u) { s *= weight[ch]; }
    return s;
}

// 1 / sqrt rather than inverseSqrt, whose precision WGSL leaves looser.
fn invstd_of(v: f32) -> f32 {
    return 1.0 / sqrt(v + p.eps);
}

// ---- mean: partial sums of x - x0, then mean = x0 + sum / m -------------------------------

@compute @workgroup_size(RWG)
fn mean_partial(inv: Invocation) {
    let chunk = chunk_of(inv);
    if (!chunk.valid) { return; }
    let x0 = x[chunk.ch * p.hw];
    var acc = 0.0;
    for (var w = walk_start(chunk); w.t < chunk.end; walk_next(&w)) {
        acc += x[w.at] - x0;
    }
    store_partial(chunk, acc, inv.lid.x);
}

@compute @workgroup_size(RWG)
fn mean_finalize(inv: Invocation) {
    let ch = workgroup_index(inv);
    if (ch >= p.c) { return; }
    let s = workgroup_sum(part_share(ch, inv.lid.x), inv.lid.x);
    if (inv.lid.x == 0u) { mean_out[ch] = x[ch * p.hw] + s / p.m; }
}

// ---- biased variance: partial sums of (x - mean)^2, then var and invstd -------------------

@compute @workgroup_size(RWG)
fn var_partial(inv: Invocation) {
    let chunk = chunk_of(inv);
    if (!chunk.valid) { return; }
    let m = mean[chunk.ch];
    var acc = 0.0;
    for (var w = walk_start(chunk); w.t < chunk.end; walk_next(&w)) {
        let d = x[w.at] - m;
        acc += d * d;
    }
    store_partial(chunk, acc, inv.lid.x);
}

@compute @workgroup_size(RWG)
fn var_finalize(inv: Invocation) {
    let ch = workgroup_index(inv);
    if (ch >= p.c) { return; }
    let v = workgroup_sum(part_share(ch, inv.lid.x), inv.lid.x) / p.m;
    if (inv.lid.x == 0u) {
        variance_out[ch] = v;
        invstd_out[ch] = invstd_of(v);
    }
}

// The invstd of the running variance (eval), one thread per channel.
@compute @workgroup_size(WG)
fn eval_invstd(inv: Invocation) {
    let ch = thread_index(inv);
    if (ch >= p.c) { return; }
    invstd_out[ch] = invstd_of(variance[ch]);
}

// ---- y = (x - mean) * invstd * weight + bias ----------------------------------------------

@compute @workgroup_size(RWG)
fn apply_norm(inv: Invocation) {
    let chunk = chunk_of(inv);
    if (!chunk.valid) { return; }
    // A workgroup's values share one channel: its statistics are read once per thread.
    let m = mean[chunk.ch];
    let s = scale(chunk.ch);
    var shift = 0.0;
    if ((p.flags & HAS_BIAS) != 0u) { shift = bias[chunk.ch]; }
    for (var w = walk_start(chunk); w.t < chunk.end; walk_next(&w)) {
        out[w.at] = (x[w.at] - m) * s + shift;
    }
}

// ---- backward: per-channel sum(dy) and sum(dy * (x - mean)), then dbias and dweight -------

@compute @workgroup_size(RWG)
fn grad_partial(inv: Invocation) {
    let chunk = chunk_of(inv);
    if (!chunk.valid) { return; }
    let m = mean[chunk.ch];
    // (sum of dy, sum of dy * (x - mean))
    var acc = vec2<f32>();
    for (var w = walk_start(chunk); w.t < chunk.end; walk_next(&w)) {
        let j = w.at;
        acc += vec2<f32>(dy[j], dy[j] * (x[j] - m));
    }
    let s = workgroup_sum2(acc, inv.lid.x);
    if (inv.lid.x == 0u) {
        part_out[chunk.g] = s.x;
        part2_out[chunk.g] = s.y;
    }
}

@compute @workgroup_size(RWG)
fn grad_finalize(inv: Invocation) {
    let ch = workgroup_index(inv);
    if (ch >= p.c) { return; }
    var acc = vec2<f32>();
    for (var k = inv.lid.x; k < p.chunks; k += RWG) {
        acc += vec2<f32>(part[ch * p.chunks + k], part2[ch * p.chunks + k]);
    }
    let s = workgroup_sum2(acc, inv.lid.x);
    if (inv.lid.x == 0u) {
        dbias_out[ch] = s.x;
        // invstd factored out of the sum, as in the CPU kernel.
        dweight_out[ch] = s.y * invstd[ch];
    }
}

// ---- dx through the batch statistics (training):
//      dx = weight * invstd * (dy - dbias / m - (x - mean) * invstd * dweight / m) -----------

@compute @workgroup_size(RWG)
fn dx_train(inv: Invocation) {
    let chunk = chunk_of(inv);
    if (!chunk.valid) { return; }
    let ch = chunk.ch;
    let mean_dy = dbias[ch] / p.m;
    let k = invstd[ch] * dweight[ch] / p.m;
    let s = scale(ch);
    let m = mean[ch];
    for (var w = walk_start(chunk); w.t < chunk.end; walk_next(&w)) {
        out[w.at] = s * (dy[w.at] - mean_dy - (x[w.at] - m) * k);
    }
}

// ---- dx with constant statistics (eval): dx = dy * weight * invstd ------------------------

@compute @workgroup_size(RWG)
fn dx_eval(inv: Invocation) {
    let chunk = chunk_of(inv);
    if (!chunk.valid) { return; }
    let s = scale(chunk.ch);
    for (var w = walk_start(chunk); w.t < chunk.end; walk_next(&w)) {
        out[w.at] = dy[w.at] * s;
    }
}
