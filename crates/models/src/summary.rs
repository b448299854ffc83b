//! A per-layer table of a model (output shapes, parameters, FLOPs) from one traced forward.
//!
//! FLOPs are 2 x the multiply-adds of the conv and dense layers (SE/SaE's included) for one
//! image, as papers count them; biases, batch norm, activations, pooling, the attention's
//! rescaling and the residual additions are not counted. senetv2-9 (paper) on 32x32 comes to
//! 62.7 MFLOPs, as MODELS.md states.
use crate::model::{Attention, Layer, Model};
use senet_nn::layers::{Conv2d, Linear};
use senet_nn::{Module, Result};
use senet_tensor::{no_grad, DType, Tensor};
use std::fmt;

/// One row of a [`Summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// `conv1`, `layer1.0.conv2`, `layer1.0.sae`, `layer1.0` (the block's output), `fc`, ...
    pub name: String,
    /// What the layer is, e.g. `conv 3x3/2, 32 groups`.
    pub layer: String,
    /// Output shape for one image, batch dimension included (`[1, C, H, W]` or `[1, N]`).
    pub output: Vec<usize>,
    /// The layer's own trainable parameters (0 for a block's output row).
    pub params: usize,
    /// The layer's own FLOPs for one image.
    pub flops: u64,
}

/// Layer table and totals of a model at one input size.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The model's config, as text.
    pub model: String,
    /// Side of the square input image the model was traced at.
    pub input_size: usize,
    /// One row per layer, in forward order.
    pub rows: Vec<SummaryRow>,
    /// PyTorch's count: weights and biases.
    pub trainable: usize,
    /// Keras's count: also batch norm's running mean and variance.
    pub with_bn_statistics: usize,
    /// FLOPs of one forward pass for one image (see the module docs).
    pub flops: u64,
}

impl Summary {
    /// [`Summary::flops`] in millions, the unit papers quote.
    pub fn mflops(&self) -> f64 {
        self.flops as f64 / 1e6
    }
}

/// Runs one forward of a `[1, 3, input_size, input_size]` zero image (evaluation mode, no
/// gradients, on the model's device) and records every layer.
///
/// FLOPs are 2 x the multiply-adds of the conv and dense layers (SE/SaE's included), biases
/// excluded, as the PyTorch reference's forward hooks count them; senetv2-9 (paper) at 32x32:
/// 62,693,376 = 62.7 MFLOPs.
pub fn summary(model: &mut Model, input_size: usize) -> Result<Summary> {
    let x = Tensor::full_on(
        &[1, 3, input_size, input_size],
        0.0,
        DType::F32,
        model.device(),
    )?;
    let mut rows = Vec::new();
    no_grad(|| {
        model.forward_traced(&x, false, &mut |name, layer, y| {
            rows.push(SummaryRow {
                name: name.to_string(),
                layer: describe(layer),
                output: y.shape().to_vec(),
                params: params(layer),
                flops: 2 * multiply_adds(layer, y.shape()),
            })
        })
    })?;
    let (trainable, with_bn_statistics) = model.count_parameters();
    Ok(Summary {
        model: model.config().to_string(),
        input_size,
        flops: rows.iter().map(|r| r.flops).sum(),
        rows,
        trainable,
        with_bn_statistics,
    })
}

fn linear_params(l: &Linear) -> usize {
    l.weight.numel() + l.bias.as_ref().map_or(0, Tensor::numel)
}

fn conv_params(c: &Conv2d) -> usize {
    c.weight.numel() + c.bias.as_ref().map_or(0, Tensor::numel)
}

fn attention_linears(a: &Attention) -> Vec<&Linear> {
    match a {
        Attention::Se(se) => vec![&se.fc1, &se.fc2],
        Attention::Sae(sae) => sae.branches.branches.iter().chain([&sae.fc]).collect(),
    }
}

/// Trainable parameters of the layer itself.
fn params(layer: Layer<'_>) -> usize {
    match layer {
        Layer::Conv(c) => conv_params(c),
        Layer::BatchNorm(bn) => bn.weight.numel() + bn.bias.numel(),
        Layer::Linear(l) => linear_params(l),
        Layer::Attention(a) => attention_linears(a).into_iter().map(linear_params).sum(),
        Layer::Downsample(c, bn) => conv_params(c) + bn.weight.numel() + bn.bias.numel(),
        Layer::MaxPool(_) | Layer::GlobalAvgPool | Layer::Residual => 0,
    }
}

/// Multiply-adds for one image; `output` is the layer's output shape (batch first).
fn multiply_adds(layer: Layer<'_>, output: &[usize]) -> u64 {
    // Each output element of a conv is a dot product over in/groups x kh x kw inputs.
    let conv = |c: &Conv2d| {
        let per_output: usize = c.weight.shape()[1..].iter().product();
        (output[1..].iter().product::<usize>() * per_output) as u64
    };
    // A dense layer on one image's vector: one multiply-add per weight.
    match layer {
        Layer::Conv(c) | Layer::Downsample(c, _) => conv(c),
        Layer::Linear(l) => l.weight.numel() as u64,
        Layer::Attention(a) => attention_linears(a)
            .iter()
            .map(|l| l.weight.numel() as u64)
            .sum(),
        Layer::BatchNorm(_) | Layer::MaxPool(_) | Layer::GlobalAvgPool | Layer::Residual => 0,
    }
}

fn describe(layer: Layer<'_>) -> String {
    let conv = |c: &Conv2d| {
        let (w, o) = (c.weight.shape(), c.options);
        let groups = o.groups;
        let kind = if groups > 1 && w[1] == 1 && w[0] == groups {
            "depthwise"
        } else {
            "conv"
        };
        let mut s = format!("{kind} {}x{}/{}", w[2], w[3], o.stride.0);
        if groups > 1 && kind == "conv" {
            s += &format!(", {groups} groups");
        }
        s
    };
    match layer {
        Layer::Conv(c) => conv(c),
        Layer::BatchNorm(_) => "batch norm".into(),
        Layer::MaxPool(o) => format!("max pool {}x{}/{}", o.kernel.0, o.kernel.1, o.stride.0),
        Layer::GlobalAvgPool => "global avg pool".into(),
        Layer::Linear(l) => format!("dense {}->{}", l.weight.shape()[1], l.weight.shape()[0]),
        Layer::Attention(Attention::Se(se)) => {
            let [h, c] = [se.fc1.weight.shape()[0], se.fc1.weight.shape()[1]];
            format!("SE {c}->{h}->{c}, {}", se.combine)
        }
        Layer::Attention(Attention::Sae(sae)) => {
            let fc = sae.fc.weight.shape();
            let k = sae.branches.branches.len();
            format!(
                "SaE {k}x({}->{})->{}, {}",
                fc[0],
                fc[1] / k.max(1),
                fc[0],
                sae.combine
            )
        }
        Layer::Downsample(c, _) => format!("{} + BN", conv(c)),
        Layer::Residual => "add + ReLU".into(),
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |v: String, zero: bool| if zero { "-".to_string() } else { v };
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                let shape: Vec<_> = r.output[1..].iter().map(usize::to_string).collect();
                [
                    r.name.clone(),
                    r.layer.clone(),
                    shape.join("x"),
                    dash(thousands(r.params as u64), r.params == 0),
                    dash(format!("{:.3}", r.flops as f64 / 1e6), r.flops == 0),
                ]
            })
            .collect();
        let header = ["layer", "type", "output", "params", "MFLOPs"].map(String::from);
        let mut widths = [0; 5];
        for row in std::iter::once(&header).chain(&cells) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        writeln!(
            f,
            "{}, input 3x{}x{}",
            self.model, self.input_size, self.input_size
        )?;
        for row in std::iter::once(&header).chain(&cells) {
            // Names and types left-aligned, numbers right-aligned.
            let [a, b, c, d, e] = row;
            let [wa, wb, wc, wd, we] = widths;
            writeln!(f, "{a:<wa$}  {b:<wb$}  {c:<wc$}  {d:>wd$}  {e:>we$}")?;
        }
        writeln!(
            f,
            "trainable parameters: {}",
            thousands(self.trainable as u64)
        )?;
        writeln!(
            f,
            "parameters with BN statistics: {}",
            thousands(self.with_bn_statistics as u64)
        )?;
        write!(
            f,
            "forward: {:.1} MFLOPs per image (2 x multiply-adds of conv and dense layers)",
            self.mflops()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(9_443_050), "9,443,050");
        assert_eq!(thousands(123_456_789_012), "123,456,789,012");
    }
}
