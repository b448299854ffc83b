// Optimizer steps, one thread per parameter, updating the parameter and its state in place.
// The launcher prepends invocation.wgsl. The expressions and their order are those of
// crates/cpu/src/optim.rs (PyTorch's semantics); per-step scalars (bias corrections, decay
// factor) arrive precomputed in the uniform.

struct SgdParams {
    len: u32,
    lr: f32, momentum: f32, weight_decay: f32,
    // Flags, 0 or 1.
    nesterov: u32, first_step: u32,
};

struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32, beta2: f32,
    one_minus_beta1: f32, one_minus_beta2: f32,
    eps: f32,
    // 1 - lr * weight_decay (decoupled weight decay).
    decay: f32,
    // 1 - beta^step.
    bias1: f32, bias2: f32,
};

@group(0) @binding(0) var<uniform> sgd: SgdParams;
@group(0) @binding(0) var<uniform> adam: AdamParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
// SGD's velocity, or AdamW's first moment.
@group(0) @binding(3) var<storage, read_write> state1: array<f32>;
// AdamW's second moment.
@group(0) @binding(4) var<storage, read_write> state2: array<f32>;

@compute @workgroup_size(WG)
fn sgd_step(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= sgd.len) { return; }
    let p = param[i];
    var g = grad[i] + sgd.weight_decay * p;
    // With momentum 0 the velocity is neither read nor written (it may be a dummy buffer).
    if (sgd.momentum != 0.0) {
        var v = g;
        if (sgd.first_step == 0u) {
            v = sgd.momentum * state1[i] + g;
        }
        state1[i] = v;
        g = select(v, g + sgd.momentum * v, sgd.nesterov != 0u);
    }
    param[i] = p - sgd.lr * g;
}

@compute @workgroup_size(WG)
fn adamw_step(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= adam.len) { return; }
    let g = grad[i];
    let p = param[i] * adam.decay;
    let m = adam.beta1 * state1[i] + adam.one_minus_beta1 * g;
    let v = adam.beta2 * state2[i] + adam.one_minus_beta2 * g * g;
    state1[i] = m;
    state2[i] = v;
    let m_hat = m / adam.bias1;
    let v_hat = v / adam.bias2;
    param[i] = p - adam.lr * m_hat / (sqrt(v_hat) + adam.eps);
}
