//! Weight initializers, all drawn from a caller's seeded rng so a model is repeatable.
//!
//! PyTorch's conventions (torchvision ResNets) and Keras's (the paper's code) differ; both are
//! here because the `cifar` and `paper` presets use one each.
use rand::Rng;
use senet_tensor::Tensor;

/// `(fan_in, fan_out)` of a weight in PyTorch's layout: `[out, in/groups, kh, kw]` or `[out, in]`.
/// As in PyTorch, fan_in is `in/groups * kh * kw` and fan_out is `out * kh * kw`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    (
        shape.get(1).copied().unwrap_or(1) * receptive,
        shape[0] * receptive,
    )
}

/// Uniform in `[-bound, bound)`.
pub fn uniform(shape: &[usize], bound: f64, rng: &mut impl Rng) -> Tensor {
    Tensor::uniform(shape, -bound as f32, bound as f32, rng)
}

/// Normal with mean 0 and standard deviation `std`.
pub fn normal(shape: &[usize], std: f64, rng: &mut impl Rng) -> Tensor {
    let n = Tensor::randn(shape, rng);
    n.mul_scalar(std).expect("scaling a CPU tensor cannot fail")
}

/// Kaiming (He) normal for ReLU networks, fan-out mode: std = sqrt(2 / fan_out). torchvision
/// initializes ResNet convolutions this way.
pub fn kaiming_normal_fan_out(shape: &[usize], rng: &mut impl Rng) -> Tensor {
    let (_, fan_out) = fans(shape);
    normal(shape, (2.0 / fan_out as f64).sqrt(), rng)
}

/// Kaiming (He) uniform, fan-in mode, for gain sqrt(2): bound = sqrt(6 / fan_in).
pub fn kaiming_uniform(shape: &[usize], rng: &mut impl Rng) -> Tensor {
    let (fan_in, _) = fans(shape);
    uniform(shape, (6.0 / fan_in as f64).sqrt(), rng)
}

/// Glorot (Xavier) uniform: bound = sqrt(6 / (fan_in + fan_out)), Keras's default for conv and
/// dense kernels. `fans` are passed explicitly because Keras counts them in its own layout.
pub fn glorot_uniform(
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    rng: &mut impl Rng,
) -> Tensor {
    uniform(shape, (6.0 / (fan_in + fan_out) as f64).sqrt(), rng)
}

/// Keras's fans for a conv kernel given in PyTorch layout `[out, in/groups, kh, kw]`: Keras's
/// kernel is `(kh, kw, in/groups, out)`, so fan_in = kh*kw*in/groups and fan_out = kh*kw*out;
/// a depthwise kernel is `(kh, kw, channels, 1)`: fan_in = kh*kw*channels, fan_out = kh*kw.
pub fn keras_conv_fans(shape: &[usize], depthwise: bool) -> (usize, usize) {
    let k = shape[2] * shape[3];
    if depthwise {
        (k * shape[0], k)
    } else {
        (k * shape[1], k * shape[0])
    }
}

/// PyTorch's default for `nn.Linear` (and conv) layers: weight and bias uniform in
/// `[-1/sqrt(fan_in), 1/sqrt(fan_in))` (kaiming_uniform with a = sqrt(5) for the weight).
pub fn torch_default(shape: &[usize], fan_in: usize, rng: &mut impl Rng) -> Tensor {
    uniform(shape, 1.0 / (fan_in as f64).sqrt(), rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fans_and_spreads() {
        assert_eq!(fans(&[64, 3, 7, 7]), (147, 3136));
        assert_eq!(fans(&[10, 2048]), (2048, 10));
        assert_eq!(keras_conv_fans(&[64, 3, 7, 7], false), (147, 3136));
        assert_eq!(keras_conv_fans(&[32, 1, 3, 3], true), (288, 9));
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let w = kaiming_normal_fan_out(&[256, 64, 3, 3], &mut rng)
            .to_vec::<f64>()
            .unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
        let want = (2.0 / (256.0 * 9.0f64)).sqrt();
        assert!((std / want - 1.0).abs() < 0.02, "std {std} vs {want}");
        let g = glorot_uniform(&[100, 200], 200, 100, &mut rng)
            .to_vec::<f64>()
            .unwrap();
        let bound = (6.0 / 300.0f64).sqrt();
        assert!(g.iter().all(|v| v.abs() <= bound));
        assert!(g.iter().any(|v| v.abs() > 0.9 * bound));
    }
}
