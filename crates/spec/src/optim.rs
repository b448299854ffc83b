//! Scalars the optimizer steps of both backends share.

/// The per-step scalars of AdamW, computed once in f64: `[lr, beta1, beta2, 1 - beta1,
/// 1 - beta2, eps, 1 - lr * weight_decay, 1 - beta1^step, 1 - beta2^step]`. Shared with the GPU
/// launcher so both round the same f64 values.
#[derive(Clone, Copy, Debug)]
pub struct AdamScalars {
    pub values: [f64; 9],
}

impl AdamScalars {
    pub fn new(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, step: u64) -> Self {
        // powf: `step` may exceed i32; the bias corrections only need f64 accuracy.
        let t = step as f64;
        Self {
            values: [
                lr,
                beta1,
                beta2,
                1.0 - beta1,
                1.0 - beta2,
                eps,
                1.0 - lr * weight_decay,
                1.0 - beta1.powf(t),
                1.0 - beta2.powf(t),
            ],
        }
    }
}
