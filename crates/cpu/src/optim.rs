//! Optimizer steps with PyTorch's semantics, in place on flat parameter slices: SGD (with
//! momentum, Nesterov and L2 weight decay) and AdamW (decoupled weight decay). The GPU kernels
//! in `shaders/optim.wgsl` compute the same expressions in the same order.
//!
//! Hyperparameters are f64 and rounded once to `T` (for f32 the same roundings as the GPU's
//! uniform), so the CPU and GPU steps agree to an ulp or two.
use senet_spec::optim::AdamScalars;
use senet_spec::Element;

/// One SGD step. `g = grad + weight_decay * param`; with momentum,
/// `v = first_step ? g : momentum * v + g` and `g = nesterov ? g + momentum * v : v`;
/// then `param -= lr * g`. With `momentum == 0` this is plain SGD whatever `nesterov` says and
/// `velocity` is not touched (it may be empty).
#[allow(clippy::too_many_arguments)] // mirrors torch.optim.SGD's hyperparameters one for one
pub fn sgd_step<T: Element>(
    param: &mut [T],
    grad: &[T],
    velocity: &mut [T],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    first_step: bool,
) {
    debug_assert_eq!(param.len(), grad.len());
    let (lr, mu, wd) = (
        T::from_f64(lr),
        T::from_f64(momentum),
        T::from_f64(weight_decay),
    );
    if momentum == 0.0 {
        for (p, &g) in param.iter_mut().zip(grad) {
            *p -= lr * (g + wd * *p);
        }
        return;
    }
    debug_assert_eq!(param.len(), velocity.len());
    for ((p, &g), v) in param.iter_mut().zip(grad).zip(velocity.iter_mut()) {
        let g = g + wd * *p;
        *v = if first_step { g } else { mu * *v + g };
        let step = if nesterov { g + mu * *v } else { *v };
        *p -= lr * step;
    }
}

/// One AdamW step (`step` counts from 1): `param *= 1 - lr * weight_decay`;
/// `m = beta1 * m + (1 - beta1) * g`; `v = beta2 * v + (1 - beta2) * g^2`;
/// `param -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)`.
#[allow(clippy::too_many_arguments)] // mirrors torch.optim.AdamW's hyperparameters one for one
pub fn adamw_step<T: Element>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: u64,
) {
    debug_assert!(step >= 1, "AdamW steps count from 1");
    debug_assert!(param.len() == grad.len() && param.len() == m.len() && param.len() == v.len());
    let s = AdamScalars::new(lr, beta1, beta2, eps, weight_decay, step);
    let t = T::from_f64;
    let (lr, b1, b2, eps, decay) = (t(s.lr), t(s.beta1), t(s.beta2), t(s.eps), t(s.decay));
    let (one_minus_b1, one_minus_b2) = (t(s.one_minus_beta1), t(s.one_minus_beta2));
    let (bc1, bc2) = (t(s.bias1), t(s.bias2));
    for (((p, &g), m), v) in param
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        *p *= decay;
        *m = b1 * *m + one_minus_b1 * g;
        *v = b2 * *v + one_minus_b2 * g * g;
        let m_hat = *m / bc1;
        let v_hat = *v / bc2;
        *p -= lr * m_hat / (v_hat.sqrt() + eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use senet_spec::testing::{assert_close, Tol};

    /// Hand-computed values in f64: one rounding per operation, far below 1e-12.
    const HAND: Tol = Tol {
        abs: 1e-12,
        rel: 0.0,
    };

    /// Asserts `(got, want)` pairs agree to [`HAND`].
    fn check(pairs: &[(&str, f64, f64)]) {
        for &(what, got, want) in pairs {
            assert_close(what, &[got], &[want], HAND);
        }
    }

    #[test]
    fn sgd_with_momentum_two_steps() {
        // lr 0.1, momentum 0.9, wd 0.01, p = 1, grad 0.5 twice.
        // Step 1: g = 0.5 + 0.01 = 0.51; v = g = 0.51; p = 1 - 0.051 = 0.949.
        // Step 2: g = 0.5 + 0.00949 = 0.50949; v = 0.459 + 0.50949 = 0.96849;
        //         p = 0.949 - 0.096849 = 0.852151.
        let (mut p, mut v) = ([1.0f64], [0.0f64]);
        sgd_step(&mut p, &[0.5], &mut v, 0.1, 0.9, 0.01, false, true);
        check(&[("p", p[0], 0.949), ("v", v[0], 0.51)]);
        sgd_step(&mut p, &[0.5], &mut v, 0.1, 0.9, 0.01, false, false);
        check(&[("p", p[0], 0.852151), ("v", v[0], 0.96849)]);
    }

    #[test]
    fn sgd_nesterov_two_steps() {
        // Step 1: g = 0.51; v = 0.51; step = 0.51 + 0.9 * 0.51 = 0.969; p = 1 - 0.0969 = 0.9031.
        // Step 2: g = 0.5 + 0.009031 = 0.509031; v = 0.459 + 0.509031 = 0.968031;
        //         step = 0.509031 + 0.8712279 = 1.3802589; p = 0.9031 - 0.13802589 = 0.76507411.
        let (mut p, mut v) = ([1.0f64], [0.0f64]);
        sgd_step(&mut p, &[0.5], &mut v, 0.1, 0.9, 0.01, true, true);
        check(&[("p", p[0], 0.9031)]);
        sgd_step(&mut p, &[0.5], &mut v, 0.1, 0.9, 0.01, true, false);
        check(&[("p", p[0], 0.76507411), ("v", v[0], 0.968031)]);
    }

    #[test]
    fn sgd_without_momentum_ignores_nesterov_and_velocity() {
        // p = 1 - 0.1 * 0.51 = 0.949; then 0.949 - 0.1 * (0.5 + 0.00949) = 0.898051.
        let mut p = [1.0f64];
        sgd_step(&mut p, &[0.5], &mut [], 0.1, 0.0, 0.01, true, true);
        check(&[("p", p[0], 0.949)]);
        sgd_step(&mut p, &[0.5], &mut [], 0.1, 0.0, 0.01, true, false);
        check(&[("p", p[0], 0.898051)]);
    }

    #[test]
    fn adamw_two_steps() {
        // lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.01, p = 1; grads 0.5 then -0.25.
        // Step 1: p = 0.999; m = 0.05; v = 0.00025; m_hat = 0.05 / 0.1 = 0.5;
        //         v_hat = 0.00025 / 0.001 = 0.25; p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8)
        //         = 0.899000002 (to 1e-12).
        // Step 2: p = 0.899000002 * 0.999 = 0.898101001998; m = 0.045 - 0.025 = 0.02;
        //         v = 0.00024975 + 0.0000625 = 0.00031225; m_hat = 0.02 / 0.19 = 0.105263157895;
        //         v_hat = 0.00031225 / 0.001999 = 0.156203101551, sqrt = 0.395225380702;
        //         p = 0.898101001998 - 0.0105263157895 / 0.395225390702 = 0.871467298706.
        let (mut p, mut m, mut v) = ([1.0f64], [0.0f64], [0.0f64]);
        adamw_step(
            &mut p,
            &[0.5],
            &mut m,
            &mut v,
            0.1,
            0.9,
            0.999,
            1e-8,
            0.01,
            1,
        );
        check(&[
            ("p", p[0], 0.899000002),
            ("m", m[0], 0.05),
            ("v", v[0], 0.00025),
        ]);
        adamw_step(
            &mut p,
            &[-0.25],
            &mut m,
            &mut v,
            0.1,
            0.9,
            0.999,
            1e-8,
            0.01,
            2,
        );
        check(&[("m", m[0], 0.02), ("v", v[0], 0.00031225)]);
        assert!((p[0] - 0.871467298706).abs() < 1e-11, "{p:?}"); // the hand value has 12 digits
    }

    #[test]
    fn f32_steps_agree_with_f64() {
        // Generic over the element type: f32 within f32 rounding of the f64 result.
        let (mut p32, mut m32, mut v32) = (vec![1.0f32, -2.0], vec![0.0f32; 2], vec![0.0f32; 2]);
        let (mut p64, mut m64, mut v64) = (vec![1.0f64, -2.0], vec![0.0f64; 2], vec![0.0f64; 2]);
        for step in 1..=3 {
            adamw_step(
                &mut p32,
                &[0.3, -0.1],
                &mut m32,
                &mut v32,
                1e-2,
                0.9,
                0.999,
                1e-8,
                0.05,
                step,
            );
            adamw_step(
                &mut p64,
                &[0.3, -0.1],
                &mut m64,
                &mut v64,
                1e-2,
                0.9,
                0.999,
                1e-8,
                0.05,
                step,
            );
        }
        for (a, b) in p32.iter().zip(&p64) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
