// Softmax, log-softmax, their backward passes and label-smoothed cross-entropy, with the
// semantics of crates/cpu/src/softmax.rs. The launcher prepends invocation.wgsl and
// workgroup_reduce.wgsl. The input is viewed as [outer, axis, inner] and normalized along the
// middle axis after subtracting its maximum (so exp cannot overflow).
//
// Two layouts, as in reduce.wgsl:
// - `*_rows` (inner == 1, e.g. class scores): one 64-thread workgroup per row, striding over the
//   row and combining with workgroup_reduce. 64 suits the 10 to 1000 classes of this project:
//   few idle threads on short rows, still 16 elements a thread on long ones.
// - `*_cols` (inner > 1, e.g. a softmax over channels of an image): one thread per
//   (outer, inner) column, looping over the axis; neighbouring threads read neighbouring words.
// Cross-entropy writes each row's loss already divided by the batch; the launcher sums them
// with the deterministic reduction of reduce.wgsl.

struct SoftmaxParams {
    outer: u32, axis: u32, inner: u32,
    // Threads that have work: outer * inner columns, or the elements of xent_backward.
    total: u32,
    // 1 for log-softmax.
    log: u32,
    // Label smoothing: `eps / classes` (off the label) and `1 - eps + eps / classes` (on it).
    eps: f32, on: f32, off: f32,
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

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// Index of element a of the axis of column g (outer * inner columns, elements inner apart).
fn column_at(g: u32, a: u32) -> u32 {
    return ((g / p.inner) * p.axis + a) * p.inner + g % p.inner;
}

// Sum over this workgroup's threads, each holding a part of a row.
fn row_sum(v: f32, lid: u32) -> f32 {
    return workgroup_reduce(v, lid, ROW_THREADS, false);
}

// A row's maximum, its sum of exp(x - max), and the log of that sum, shared by the workgroup.
struct RowStats {
    max: f32,
    sum: f32,
    log_sum: f32,
};

fn row_stats(base: u32, lid: u32) -> RowStats {
    var m = neg_inf();
    for (var a = lid; a < p.axis; a += ROW_THREADS) {
        m = max(m, sin0[base + a]);
    }
    m = workgroup_reduce(m, lid, ROW_THREADS, true);
    var s = 0.0;
    for (var a = lid; a < p.axis; a += ROW_THREADS) {
        s += exp(sin0[base + a] - m);
    }
    s = row_sum(s, lid);
    return RowStats(m, s, log(s));
}

// Softmax, or log-softmax, of input element i of a row (or column) with statistics r.
fn softmax_value(i: u32, r: RowStats) -> f32 {
    let z = sin0[i] - r.max;
    return select(exp(z) / r.sum, z - r.log_sum, p.log != 0u);
}

@compute @workgroup_size(ROW_THREADS)
fn softmax_rows(inv: Invocation) {
    let o = workgroup_index(inv);
    // Uniform across the workgroup: the barriers in workgroup_reduce stay in uniform control flow.
    if (o >= p.outer) { return; }
    let r = row_stats(o * p.axis, inv.lid.x);
    for (var i = o * p.axis + inv.lid.x; i < (o + 1u) * p.axis; i += ROW_THREADS) {
        sout[i] = softmax_value(i, r);
    }
}

@compute @workgroup_size(WG)
fn softmax_cols(inv: Invocation) {
    let g = thread_index(inv);
    if (g >= p.total) { return; }
    var m = neg_inf();
    for (var a = 0u; a < p.axis; a += 1u) {
        m = max(m, sin0[column_at(g, a)]);
    }
    var s = 0.0;
    for (var a = 0u; a < p.axis; a += 1u) {
        s += exp(sin0[column_at(g, a)] - m);
    }
    let r = RowStats(m, s, log(s));
    for (var a = 0u; a < p.axis; a += 1u) {
        sout[column_at(g, a)] = softmax_value(column_at(g, a), r);
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

@compute @workgroup_size(ROW_THREADS)
fn softmax_backward_rows(inv: Invocation) {
    let o = workgroup_index(inv);
    if (o >= p.outer) { return; }
    let end = (o + 1u) * p.axis;
    var s = 0.0;
    for (var i = o * p.axis + inv.lid.x; i < end; i += ROW_THREADS) {
        s += backward_term(i);
    }
    s = row_sum(s, inv.lid.x);
    for (var i = o * p.axis + inv.lid.x; i < end; i += ROW_THREADS) {
        sout[i] = backward_value(i, s);
    }
}

@compute @workgroup_size(WG)
fn softmax_backward_cols(inv: Invocation) {
    let g = thread_index(inv);
    if (g >= p.total) { return; }
    var s = 0.0;
    for (var a = 0u; a < p.axis; a += 1u) {
        s += backward_term(column_at(g, a));
    }
    for (var a = 0u; a < p.axis; a += 1u) {
        sout[column_at(g, a)] = backward_value(column_at(g, a), s);
    }
}

// Row o of logits [batch, classes]: probs (sout) = exp(log-softmax), and row_loss[o] =
// ((1 - eps) * nll + eps * mean(-log p)) / batch. A label >= classes gives a NaN loss, so a bad
// label shows up instead of reading out of bounds.
@compute @workgroup_size(ROW_THREADS)
fn xent_rows(inv: Invocation) {
    let o = workgroup_index(inv);
    if (o >= p.outer) { return; }
    let base = o * p.axis;
    let r = row_stats(base, inv.lid.x);
    var sum_logp = 0.0;
    for (var a = inv.lid.x; a < p.axis; a += ROW_THREADS) {
        let lp = sin0[base + a] - r.max - r.log_sum;
        sout[base + a] = exp(lp);
        sum_logp += lp;
    }
    sum_logp = row_sum(sum_logp, inv.lid.x);
    if (inv.lid.x == 0u) {
        let label = labels[o];
        var loss = bitcast<f32>(0x7fc00000u); // NaN
        if (label < p.axis) {
            let nll = -(sin0[base + label] - r.max - r.log_sum);
            let uniform_nll = -sum_logp / f32(p.axis);
            loss = ((1.0 - p.eps) * nll + p.eps * uniform_nll) / f32(p.outer);
        }
        row_loss[o] = loss;
    }
}

// d logits = (probs - target) * g / batch, g read from loss_grad[0] (no readback needed).
@compute @workgroup_size(WG)
fn xent_backward(inv: Invocation) {
    let i = thread_index(inv);
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
