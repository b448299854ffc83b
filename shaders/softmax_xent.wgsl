// Softmax, log-softmax, their backward passes and label-smoothed cross-entropy, with the
// semantics of crates/cpu/src/softmax.rs. The input is viewed as [outer, axis, inner] and
// normalized along the middle axis after subtracting its maximum (so exp cannot overflow).
//
// Two layouts, as in reduce.wgsl:
// - `*_rows` (inner == 1, e.g. class scores): one 64-thread workgroup per row, striding over the
//   row and combining through a shared-memory tree. 64 suits the 10 to 1000 classes of this
//   project: few idle threads on short rows, still 16 elements a thread on long ones.
// - `*_cols` (inner > 1, e.g. a softmax over channels of an image): one thread per
//   (outer, inner) column, looping over the axis; neighbouring threads read neighbouring words.
// Cross-entropy writes each row's loss already divided by the batch; the launcher sums them
// with the deterministic reduction of reduce.wgsl.

struct SoftmaxParams {
    outer: u32,
    axis: u32,
    inner: u32,
    // Threads that have work: outer * inner columns, or the elements of xent_backward.
    total: u32,
    // 1 for log-softmax.
    log: u32,
    // Label smoothing: `eps / classes` (off the label) and `1 - eps + eps / classes` (on it).
    eps: f32,
    on: f32,
    off: f32,
};

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
// The input (x, or y in the backward passes) and the incoming gradient.
@group(0) @binding(1) var<storage, read> sin0: array<f32>;
@group(0) @binding(2) var<storage, read> sin1: array<f32>;
@group(0) @binding(3) var<storage, read_write> sout: array<f32>;
// Cross-entropy: labels, per-row losses, the loss's incoming gradient (one element).
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(4) var<storage, read> loss_grad: array<f32>;

const ROW_THREADS: u32 = 64u;
var<workgroup> red: array<f32, 64>;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// Tree reduction of one value per thread (sum, or max when `is_max`); every thread gets the
// result. Must be called from uniform control flow (it holds barriers).
fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = ROW_THREADS / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    // Everyone has read red[0] before the next call overwrites it.
    workgroupBarrier();
    return r;
}

// Maximum and sum of exp(x - max) of row `base` (stride 1), shared by the whole workgroup.
fn row_max_sum(base: u32, lid: u32) -> vec2<f32> {
    var m = neg_inf();
    for (var a = lid; a < p.axis; a += ROW_THREADS) {
        m = max(m, sin0[base + a]);
    }
    m = wg_reduce(m, lid, true);
    var s = 0.0;
    for (var a = lid; a < p.axis; a += ROW_THREADS) {
        s += exp(sin0[base + a] - m);
    }
    return vec2<f32>(m, wg_reduce(s, lid, false));
}

fn softmax_value(z: f32, sum: f32, log_sum: f32) -> f32 {
    return select(exp(z) / sum, z - log_sum, p.log != 0u);
}

@compute @workgroup_size(64)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup: the barriers in wg_reduce stay in uniform control flow.
    if (o >= p.outer) { return; }
    let base = o * p.axis;
    let ms = row_max_sum(base, lid.x);
    let log_sum = log(ms.y);
    for (var a = lid.x; a < p.axis; a += ROW_THREADS) {
        sout[base + a] = softmax_value(sin0[base + a] - ms.x, ms.y, log_sum);
    }
}

@compute @workgroup_size(256)
fn softmax_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (g >= p.total) { return; }
    let base = (g / p.inner) * p.axis * p.inner + g % p.inner;
    var m = neg_inf();
    for (var a = 0u; a < p.axis; a += 1u) {
        m = max(m, sin0[base + a * p.inner]);
    }
    var s = 0.0;
    for (var a = 0u; a < p.axis; a += 1u) {
        s += exp(sin0[base + a * p.inner] - m);
    }
    let log_sum = log(s);
    for (var a = 0u; a < p.axis; a += 1u) {
        let i = base + a * p.inner;
        sout[i] = softmax_value(sin0[i] - m, s, log_sum);
    }
}

// The backward term of element i given the row's sum: softmax `y * (dy - sum(dy * y))`,
// log-softmax `dy - exp(y) * sum(dy)`.
fn backward_term(i: u32) -> f32 {
    return select(sin1[i] * sin0[i], sin1[i], p.log != 0u);
}

fn backward_value(i: u32, s: f32) -> f32 {
    return select(sin0[i] * (sin1[i] - s), sin1[i] - exp(sin0[i]) * s, p.log != 0u);
}

@compute @workgroup_size(64)
fn softmax_backward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = wid.x + wid.y * nwg.x;
    if (o >= p.outer) { return; }
    let base = o * p.axis;
    var s = 0.0;
    for (var a = lid.x; a < p.axis; a += ROW_THREADS) {
        s += backward_term(base + a);
    }
    s = wg_reduce(s, lid.x, false);
    for (var a = lid.x; a < p.axis; a += ROW_THREADS) {
        sout[base + a] = backward_value(base + a, s);
    }
}

@compute @workgroup_size(256)
fn softmax_backward_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (g >= p.total) { return; }
    let base = (g / p.inner) * p.axis * p.inner + g % p.inner;
    var s = 0.0;
    for (var a = 0u; a < p.axis; a += 1u) {
        s += backward_term(base + a * p.inner);
    }
    for (var a = 0u; a < p.axis; a += 1u) {
        let i = base + a * p.inner;
        sout[i] = backward_value(i, s);
    }
}

// Row o of logits [batch, classes]: probs (sout) = exp(log-softmax), and row_loss[o] =
// ((1 - eps) * nll + eps * mean(-log p)) / batch. A label >= classes gives a NaN loss, so a bad
// label shows up instead of reading out of bounds.
@compute @workgroup_size(64)
fn xent_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = wid.x + wid.y * nwg.x;
    if (o >= p.outer) { return; }
    let base = o * p.axis;
    let ms = row_max_sum(base, lid.x);
    let log_sum = log(ms.y);
    var sum_logp = 0.0;
    for (var a = lid.x; a < p.axis; a += ROW_THREADS) {
        let lp = sin0[base + a] - ms.x - log_sum;
        sout[base + a] = exp(lp);
        sum_logp += lp;
    }
    sum_logp = wg_reduce(sum_logp, lid.x, false);
    if (lid.x == 0u) {
        let label = labels[o];
        var loss = bitcast<f32>(0x7fc00000u); // NaN
        if (label < p.axis) {
            let nll = -(sin0[base + label] - ms.x - log_sum);
            let uniform_nll = -sum_logp / f32(p.axis);
            loss = ((1.0 - p.eps) * nll + p.eps * uniform_nll) / f32(p.outer);
        }
        row_loss[o] = loss;
    }
}

// d logits = (probs - target) * g / batch, g read from loss_grad[0] (no readback needed).
@compute @workgroup_size(256)
fn xent_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (i >= p.total) { return; }
    let o = i / p.axis;
    let label = labels[o];
    let scale = loss_grad[0] / f32(p.outer);
    var tgt = select(p.off, p.on, i % p.axis == label);
    if (label >= p.axis) {
        tgt = bitcast<f32>(0x7fc00000u); // NaN, as in the forward pass
    }
    sout[i] = (sin0[i] - tgt) * scale;
}
