//! Channel attention: squeeze-and-excitation (SE, Hu et al.) and the SENetV2 module,
//! squeeze-aggregated-excitation (SaE), exactly as `../shared/MODELS.md` states them.
//!
//! Both squeeze `x [B, C, H, W]` to `z = mean over H, W` and turn it into per-channel weights
//! `s [B, C]` in (0, 1); SE with one bottleneck dense layer, SaE with k parallel ones (one
//! grouped op) whose outputs are concatenated. `s` then rescales `x`.
use crate::layers::{GroupedLinear, Linear};
use crate::{join, Module, Result, Slot};
use senet_tensor::Tensor;

/// How `s` is applied to `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// `x + x * s`: what the paper's official code does (preset `paper`).
    Residual,
    /// `x * s`: Hu et al.'s SE (preset `cifar`).
    Scale,
}

impl Combine {
    /// The name used on the command line and in checkpoint metadata.
    pub fn name(self) -> &'static str {
        match self {
            Combine::Residual => "residual",
            Combine::Scale => "scale",
        }
    }

    fn apply(self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        // `x + x * s` is computed as `x * (1 + s)`: one pass over the large x instead of two
        // (and one saved activation fewer), with `1 + s` on the small [B, C]. It differs from
        // the official code's order of operations by rounding only.
        let s = match self {
            Combine::Residual => s.add_scalar(1.0)?,
            Combine::Scale => s.clone(),
        };
        // s [B, C] broadcasts over H and W as [B, C, 1, 1].
        Ok(x.mul(&s.reshape(&[s.shape()[0], s.shape()[1], 1, 1])?)?)
    }
}

impl std::fmt::Display for Combine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Combine {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "residual" => Ok(Combine::Residual),
            "scale" => Ok(Combine::Scale),
            _ => Err(crate::Error::Config(format!(
                "unknown combine {s:?}: residual or scale"
            ))),
        }
    }
}

/// SE: `s = sigmoid(fc2(relu(fc1(z))))`, fc1: C -> C/r, fc2: C/r -> C.
///
/// ```
/// use senet_nn::attention::{Combine, Se};
/// use senet_nn::{layers::Linear, Module};
/// use senet_tensor::Tensor;
///
/// // C = 16 channels, reduction r = 4.
/// let mut se = Se {
///     fc1: Linear::new(Tensor::zeros(&[4, 16]), Some(Tensor::zeros(&[4]))),
///     fc2: Linear::new(Tensor::zeros(&[16, 4]), Some(Tensor::zeros(&[16]))),
///     combine: Combine::Scale,
/// };
/// let x = Tensor::ones(&[2, 16, 8, 8]);
/// let y = se.forward(&x, true)?;
/// assert_eq!(y.shape(), &[2, 16, 8, 8]); // same shape, channels rescaled
/// assert_eq!(y.to_vec_f32()?[0], 0.5); // all-zero weights: s = sigmoid(0)
/// # Ok::<(), senet_nn::Error>(())
/// ```
pub struct Se {
    /// The squeeze: `C -> C/r`, followed by a ReLU.
    pub fc1: Linear,
    /// The excitation: `C/r -> C`, followed by a sigmoid.
    pub fc2: Linear,
    /// How the weights rescale the input.
    pub combine: Combine,
}

impl Module for Se {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let z = x.global_avg_pool2d()?;
        let h = self.fc1.forward(&z, train)?.relu()?;
        let s = self.fc2.forward(&h, train)?.sigmoid()?;
        self.combine.apply(x, &s)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        self.fc1.visit(&join(prefix, "fc1"), f);
        self.fc2.visit(&join(prefix, "fc2"), f);
    }
}

/// SaE: k branches `C -> C/r` with ReLU on the shared `z` (one grouped dense op), concatenated
/// to `k*C/r`, then `fc: k*C/r -> C` and a sigmoid.
pub struct Sae {
    /// The k squeeze branches `C -> C/r`, run as one grouped op.
    pub branches: GroupedLinear,
    /// The excitation `k*C/r -> C`.
    pub fc: Linear,
    /// How the weights rescale the input.
    pub combine: Combine,
}

impl Module for Sae {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let z = x.global_avg_pool2d()?;
        // [B, C] shared by the k branches -> [B, k*C/r], already in concatenated order.
        let h = self.branches.forward(&z, train)?.relu()?;
        let s = self.fc.forward(&h, train)?.sigmoid()?;
        self.combine.apply(x, &s)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        self.branches.visit(&join(prefix, "branches"), f);
        self.fc.visit(&join(prefix, "fc"), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape).unwrap()
    }

    /// A 2-channel SaE with k = 2 branches of width 1, computed by hand.
    #[test]
    fn sae_residual_and_scale_by_hand() {
        // x: batch 1, 2 channels, 1x2 pixels: channel 0 = [1, 3] (mean 2), channel 1 = [2, 6] (mean 4).
        let x = t(vec![1.0, 3.0, 2.0, 6.0], &[1, 2, 1, 2]);
        let make = |combine| Sae {
            // branch 0: h0 = relu(0.5*z0 - 0.25*z1) = relu(1 - 1) = 0
            // branch 1: h1 = relu(0.25*z0 + 0.25*z1 + 0.5) = 2
            branches: GroupedLinear::new(vec![
                Linear::new(t(vec![0.5, -0.25], &[1, 2]), Some(t(vec![0.0], &[1]))),
                Linear::new(t(vec![0.25, 0.25], &[1, 2]), Some(t(vec![0.5], &[1]))),
            ]),
            // fc: s0 = sigmoid(1*h0 + 0*h1) = sigmoid(0) = 0.5, s1 = sigmoid(0*h0 + 1*h1 - 2) = 0.5... use -1:
            // s1 = sigmoid(h1 - 2 + ln 3) = sigmoid(ln 3) = 0.75
            fc: Linear::new(
                t(vec![1.0, 0.0, 0.0, 1.0], &[2, 2]),
                Some(t(vec![0.0, 3f32.ln() - 2.0], &[2])),
            ),
            combine,
        };
        let y = make(Combine::Scale)
            .forward(&x, false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want = [0.5, 1.5, 1.5, 4.5];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "scale: {y:?} vs {want:?}");
        }
        let y = make(Combine::Residual)
            .forward(&x, false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want = [1.5, 4.5, 3.5, 10.5];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "residual: {y:?} vs {want:?}");
        }
        let mut m = make(Combine::Scale);
        let mut names = Vec::new();
        m.visit("sae", &mut |n, _| names.push(n.to_string()));
        assert_eq!(
            names,
            [
                "sae.branches.0.weight",
                "sae.branches.0.bias",
                "sae.branches.1.weight",
                "sae.branches.1.bias",
                "sae.fc.weight",
                "sae.fc.bias"
            ]
        );
    }
}
