//! Layers: convolution, batch norm, dense (plain and grouped), pooling, activations, sequences.
use crate::{join, Module, Result, Slot};
use senet_tensor::{BatchNormOptions, Conv2dOptions, Pool2dOptions, RunningStats, Tensor};

/// 2-D convolution, weight `[out, in/groups, kh, kw]`, optional bias `[out]`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
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
    pub weight: Tensor,
    pub bias: Tensor,
    pub running: RunningStats,
    /// Training batches seen (PyTorch's `num_batches_tracked`).
    pub num_batches_tracked: i64,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2d {
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
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
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
pub struct GroupedLinear {
    pub branches: Vec<Linear>,
}

impl GroupedLinear {
    pub fn new(branches: Vec<Linear>) -> Self {
        GroupedLinear { branches }
    }
}

impl Module for GroupedLinear {
    fn forward(&mut self, x: &Tensor, _train: bool) -> Result<Tensor> {
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
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet), computed as `relu(x) - relu(x - 6)`.
    Relu6,
    Sigmoid,
}

impl Activation {
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
    Max(Pool2dOptions),
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
    pub layers: Vec<Box<dyn Module + Send>>,
}

impl Sequential {
    pub fn new() -> Self {
        Sequential::default()
    }
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
