//! Scalars the optimizer steps of both backends share.

/// The per-step scalars of AdamW, computed once in f64 so that both backends round the same
/// values (the CPU to f32 or f64, the GPU to the f32 fields of `AdamParams` in
/// `shaders/optim.wgsl`, which has the same names).
#[derive(Clone, Copy, Debug)]
pub struct AdamScalars {
    /// Learning rate.
    pub lr: f64,
    /// Decay rate of the running mean of gradients (first moment).
    pub beta1: f64,
    /// Decay rate of the running mean of squared gradients (second moment).
    pub beta2: f64,
    /// `1 - beta1`, the weight of the new gradient in the first moment.
    pub one_minus_beta1: f64,
    /// `1 - beta2`, the weight of the new squared gradient in the second moment.
    pub one_minus_beta2: f64,
    /// Added to the denominator so a zero second moment does not divide by zero.
    pub eps: f64,
    /// `1 - lr * weight_decay`: the decoupled weight decay.
    pub decay: f64,
    /// `1 - beta1^step`: corrects the first moment's bias toward its zero start.
    pub bias1: f64,
    /// `1 - beta2^step`: the same correction for the second moment.
    pub bias2: f64,
}

impl AdamScalars {
    /// The scalars of step number `step` (counted from 1) for these hyperparameters.
    pub fn new(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, step: u64) -> Self {
        // powf: `step` may exceed i32; the bias corrections only need f64 accuracy.
        let t = step as f64;
        AdamScalars {
            lr,
            beta1,
            beta2,
            one_minus_beta1: 1.0 - beta1,
            one_minus_beta2: 1.0 - beta2,
            eps,
            decay: 1.0 - lr * weight_decay,
            bias1: 1.0 - beta1.powf(t),
            bias2: 1.0 - beta2.powf(t),
        }
    }
}
