//! Layers: convolution, batch norm, dense (plain and grouped), pooling, activations, sequences.
use crate::{join, Error, Module, Result, Slot};
use senet_tensor::{BatchNormOptions, Conv2dOptions, Pool2dOptions, RunningStats, Tensor};

/// 2-D convolution, weight `[out, in/groups, kh, kw]`, optional bias `[out]`.
///
/// ```
/// use senet_nn::{layers::Conv2d, Module};
/// use senet_tensor::{Conv2dOptions, Tensor};
///
/// let mut conv = Conv2d::new(Tensor::zeros(&[8, 3, 3, 3]), None, Conv2dOptions::new(2, 1));
/// let y = conv.forward(&Tensor::ones(&[1, 3, 16, 16]), true)?;
/// assert_eq!(y.shape(), &[1, 8, 8, 8]);
/// # Ok::<(), senet_nn::Error>(())
/// ```
pub struct Conv2d {
    /// The filters, `[out, in/groups, kh, kw]`; a trainable leaf.
    pub weight: Tensor,
    /// The per-output-channel bias, `[out]` (usually absent before a batch norm).
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// A convolution with the given (already initialized) weight; `weight` and `bias` become
    /// trainable leaves.
    pub fn new(weight: Tensor, bias: Option<Tensor>, options: Conv2dOptions) -> Self {
        Conv2d {
            weight: weight.requires_grad(),
            bias: bias.map(|b| b.requires_grad()),
            options,
        }
    }
}

impl Module for Conv2d {
    fn forward(&mut self, x: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(x.conv2d(&self.weight, self.bias.as_ref(), self.options)?)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        f(&join(prefix, "weight"), Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), Slot::Param(b));
        }
    }
}

/// Batch normalization over channels with affine weight (1) and bias (0), and running
/// statistics updated in training mode with PyTorch's momentum convention.
pub struct BatchNorm2d {
    /// Per-channel scale `[C]` (PyTorch's `gamma`), starts at 1.
    pub weight: Tensor,
    /// Per-channel shift `[C]` (`beta`), starts at 0.
    pub bias: Tensor,
    /// Running mean and variance, used in evaluation mode.
    pub running: RunningStats,
    /// Training batches seen (PyTorch's `num_batches_tracked`).
    pub num_batches_tracked: i64,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of each new batch in the running statistics.
    pub momentum: f64,
}

impl BatchNorm2d {
    /// A batch norm over `channels` channels: weight 1, bias 0, running mean 0 and
    /// variance 1 (PyTorch's defaults are `eps = 1e-5`, `momentum = 0.1`).
    pub fn new(channels: usize, eps: f64, momentum: f64) -> Self {
        BatchNorm2d {
            weight: Tensor::ones(&[channels]).requires_grad(),
            bias: Tensor::zeros(&[channels]).requires_grad(),
            running: RunningStats::new(channels),
            num_batches_tracked: 0,
            eps,
            momentum,
        }
    }
}

impl Module for BatchNorm2d {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let opts = BatchNormOptions {
            training: train,
            momentum: self.momentum,
            eps: self.eps,
        };
        let y = x.batch_norm2d(
            Some(&self.weight),
            Some(&self.bias),
            Some(&mut self.running),
            opts,
        )?;
        if train {
            self.num_batches_tracked += 1;
        }
        Ok(y)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        f(&join(prefix, "weight"), Slot::Param(&mut self.weight));
        f(&join(prefix, "bias"), Slot::Param(&mut self.bias));
        f(
            &join(prefix, "running_mean"),
            Slot::Buffer(&mut self.running.mean),
        );
        f(
            &join(prefix, "running_var"),
            Slot::Buffer(&mut self.running.var),
        );
        f(
            &join(prefix, "num_batches_tracked"),
            Slot::Counter(&mut self.num_batches_tracked),
        );
    }
}

/// Dense layer: `x [B, in] @ weight[out, in]^T + bias [out]`.
pub struct Linear {
    /// `[out, in]`; a trainable leaf.
    pub weight: Tensor,
    /// `[out]`, if any.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A dense layer with the given (already initialized) weight and bias, made trainable
    /// leaves.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight: weight.requires_grad(),
            bias: bias.map(|b| b.requires_grad()),
        }
    }
}

impl Module for Linear {
    fn forward(&mut self, x: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(x.linear(&self.weight, self.bias.as_ref())?)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        f(&join(prefix, "weight"), Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), Slot::Param(b));
        }
    }
}

/// k independent dense layers ("branches") run as ONE grouped op. Each branch keeps its own
/// weight `[out, in]` (and bias `[out]`) under the names `{prefix}.{k}.weight`, as k separate
/// `nn.Linear`s would in PyTorch; forward stacks them into `[k, out, in]` and calls
/// `grouped_linear`. Input `[B, in]` (shared by all branches) or `[B, k*in]`; output `[B, k*out]`.
///
/// ```
/// use senet_nn::layers::{GroupedLinear, Linear};
/// use senet_nn::Module;
/// use senet_tensor::Tensor;
///
/// // 3 branches, 8 -> 2 features each, reading the same input.
/// let branch = || Linear::new(Tensor::zeros(&[2, 8]), Some(Tensor::zeros(&[2])));
/// let mut g = GroupedLinear::new(vec![branch(), branch(), branch()]);
/// assert_eq!(g.forward(&Tensor::ones(&[5, 8]), true)?.shape(), &[5, 6]);
/// # Ok::<(), senet_nn::Error>(())
/// ```
pub struct GroupedLinear {
    /// The k dense layers, all with the same shapes.
    pub branches: Vec<Linear>,
}

impl GroupedLinear {
    /// Groups `branches`, which must have the same shapes and either all have a bias or none
    /// (forward refuses a mix rather than drop some).
    pub fn new(branches: Vec<Linear>) -> Self {
        GroupedLinear { branches }
    }
}

impl Module for GroupedLinear {
    fn forward(&mut self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let with_bias = self.branches.iter().filter(|b| b.bias.is_some()).count();
        if with_bias != 0 && with_bias != self.branches.len() {
            return Err(Error::Config(format!(
                "GroupedLinear: {with_bias} of its {} branches have a bias; all or none must",
                self.branches.len()
            )));
        }
        let stack = |ts: Vec<Tensor>| -> Result<Tensor> {
            let rows: Vec<Tensor> = ts
                .iter()
                .map(|t| t.reshape(&[1].iter().chain(t.shape()).copied().collect::<Vec<_>>()))
                .collect::<senet_tensor::Result<_>>()?;
            Ok(Tensor::concat(&rows.iter().collect::<Vec<_>>(), 0)?)
        };
        let w = stack(self.branches.iter().map(|b| b.weight.clone()).collect())?;
        let biases: Option<Vec<Tensor>> = self.branches.iter().map(|b| b.bias.clone()).collect();
        let b = biases.map(stack).transpose()?;
        Ok(x.grouped_linear(&w, b.as_ref())?)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        for (k, b) in self.branches.iter_mut().enumerate() {
            b.visit(&join(prefix, &k.to_string()), f);
        }
    }
}

/// Parameter-free layers.
#[derive(Clone, Copy, Debug)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet), computed as `relu(x) - relu(x - 6)`.
    Relu6,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl Activation {
    /// The function applied to every element of `x`; the output has `x`'s shape.
    ///
    /// ```
    /// use senet_nn::layers::Activation;
    /// use senet_tensor::Tensor;
    ///
    /// let x = Tensor::from_vec(vec![-1.0f32, 3.0, 9.0], &[3])?;
    /// assert_eq!(Activation::Relu6.apply(&x)?.to_vec_f32()?, [0.0, 3.0, 6.0]);
    /// # Ok::<(), senet_nn::Error>(())
    /// ```
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            Activation::Relu6 => x.relu()?.sub(&x.add_scalar(-6.0)?.relu()?)?,
            Activation::Sigmoid => x.sigmoid()?,
        })
    }

    /// [`Activation::apply`] taking the input by value, so that relu may reuse its buffer when
    /// nothing else holds it (inference; see `Tensor::into_relu`).
    pub fn apply_owned(self, x: Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => Ok(x.into_relu()?),
            _ => self.apply(&x),
        }
    }
}

impl Module for Activation {
    fn forward(&mut self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.apply(x)
    }
    fn visit(&mut self, _: &str, _: &mut dyn FnMut(&str, Slot<'_>)) {}
}

/// Max or average pooling over windows, or the global average over H and W.
#[derive(Clone, Copy, Debug)]
pub enum Pool {
    /// [`Tensor::max_pool2d`] with these options.
    Max(Pool2dOptions),
    /// [`Tensor::avg_pool2d`] with these options.
    Avg(Pool2dOptions),
    /// `[B, C, H, W] -> [B, C]`.
    GlobalAvg,
}

impl Module for Pool {
    fn forward(&mut self, x: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(match *self {
            Pool::Max(o) => x.max_pool2d(o)?,
            Pool::Avg(o) => x.avg_pool2d(o)?,
            Pool::GlobalAvg => x.global_avg_pool2d()?,
        })
    }
    fn visit(&mut self, _: &str, _: &mut dyn FnMut(&str, Slot<'_>)) {}
}

/// Modules run one after the other, named `0`, `1`, ... like PyTorch's `nn.Sequential`.
#[derive(Default)]
pub struct Sequential {
    /// The modules, in the order they run.
    pub layers: Vec<Box<dyn Module + Send>>,
}

impl Sequential {
    /// An empty sequence (the identity).
    pub fn new() -> Self {
        Sequential::default()
    }
    /// This sequence with `layer` appended; see [`Module`] for an example.
    pub fn push(mut self, layer: impl Module + Send + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
}

impl Module for Sequential {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &mut self.layers {
            h = layer.forward(&h, train)?;
        }
        Ok(h)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit(&join(prefix, &i.to_string()), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(seed: f32, bias: bool) -> Linear {
        let w: Vec<f32> = (0..6).map(|i| seed + i as f32 * 0.5).collect();
        let b = bias.then(|| Tensor::from_vec(vec![seed, -seed], &[2]).unwrap());
        Linear::new(Tensor::from_vec(w, &[2, 3]).unwrap(), b)
    }

    #[test]
    fn grouped_linear_is_its_branches_side_by_side() {
        let x = Tensor::from_vec((0..6).map(|i| i as f32 - 2.5).collect(), &[2, 3]).unwrap();
        let mut g = GroupedLinear::new(vec![linear(1.0, true), linear(-2.0, true)]);
        let got = g.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
        let a = linear(1.0, true).forward(&x, false).unwrap();
        let b = linear(-2.0, true).forward(&x, false).unwrap();
        let want = Tensor::concat(&[&a, &b], 1)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn grouped_linear_refuses_a_mix_of_biased_and_unbiased_branches() {
        let x = Tensor::ones(&[2, 3]);
        let mut g = GroupedLinear::new(vec![linear(1.0, true), linear(-2.0, false)]);
        let err = g.forward(&x, false).unwrap_err().to_string();
        assert!(err.contains("1 of its 2 branches have a bias"), "{err}");
        let mut none = GroupedLinear::new(vec![linear(1.0, false), linear(-2.0, false)]);
        assert_eq!(none.forward(&x, false).unwrap().shape(), &[2, 4]);
    }
}
