//! The networks: a stem, a body of residual blocks (or MobileNet's separable blocks), global
//! average pooling and a dense head. Module names and their order are those of the PyTorch
//! reference (`shared/tools/reference/models_torch.py`), so checkpoints map key for key.
use crate::config::{stages, AttentionKind, BlockKind, Family, Init, ModelConfig, Settings, Stem};
use rand::rngs::StdRng;
use rand::SeedableRng;
use senet_nn::attention::{Sae, Se};
use senet_nn::init;
use senet_nn::layers::{Activation, BatchNorm2d, Conv2d, GroupedLinear, Linear};
use senet_nn::{join, Module, Result, Slot};
use senet_tensor::{Conv2dOptions, Device, Pool2dOptions, Tensor};

/// One layer as a traced forward reports it (see [`Model::forward_traced`]).
#[derive(Clone, Copy)]
pub enum Layer<'a> {
    /// A convolution (the stem's, a block's, or MobileNet's depthwise or pointwise one).
    Conv(&'a Conv2d),
    /// The batch norm that follows a conv.
    BatchNorm(&'a BatchNorm2d),
    /// The imagenet stem's max pool.
    MaxPool(Pool2dOptions),
    /// Global average pooling before the head: `[B, C, H, W]` to `[B, C]`.
    GlobalAvgPool,
    /// The dense head `fc`.
    Linear(&'a Linear),
    /// A block's SE or SaE module; its output is the rescaled branch.
    Attention(&'a Attention),
    /// A block's projection shortcut: 1x1 conv + BN.
    Downsample(&'a Conv2d, &'a BatchNorm2d),
    /// A residual block's output: branch + shortcut, then ReLU.
    Residual,
}

/// Called after each layer of a traced forward with the layer's name, the layer and its output.
pub type Tap<'t> = dyn FnMut(&str, Layer<'_>, &Tensor) + 't;

/// SE or SaE, placed after a residual branch's last conv + BN.
pub enum Attention {
    /// Squeeze-and-excitation: one bottleneck of two dense layers gives a scale per channel.
    Se(Se),
    /// Squeeze-aggregated-excitation (SENetV2): `k` parallel dense branches, concatenated,
    /// then one dense layer give the scale per channel.
    Sae(Sae),
}

impl Attention {
    /// The checkpoint name: `se` or `sae`.
    pub fn name(&self) -> &'static str {
        match self {
            Attention::Se(_) => "se",
            Attention::Sae(_) => "sae",
        }
    }
}

impl Module for Attention {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Attention::Se(m) => m.forward(x, train),
            Attention::Sae(m) => m.forward(x, train),
        }
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        match self {
            Attention::Se(m) => m.visit(prefix, f),
            Attention::Sae(m) => m.visit(prefix, f),
        }
    }
}

/// A residual block: `relu(attention(branch(x)) + shortcut(x))`.
pub struct Block {
    /// `conv{i+1}` + `bn{i+1}`: 3x3, 3x3 (basic) or 1x1, 3x3, 1x1 (bottleneck); ReLU between
    /// them, none after the last.
    pub convs: Vec<(Conv2d, BatchNorm2d)>,
    /// Rescales the branch's channels before the shortcut is added (`None` in resnet and
    /// resnext).
    pub attention: Option<Attention>,
    /// `downsample.0` (1x1 conv) and `downsample.1` (BN) where the shape changes.
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    /// [`Module::forward`] of the block named `prefix` (e.g. `layer1.0`), calling `tap` after
    /// each layer and last with the block's output (see [`Model::forward_traced`]).
    pub fn forward_traced(
        &mut self,
        prefix: &str,
        x: &Tensor,
        train: bool,
        tap: &mut Tap<'_>,
    ) -> Result<Tensor> {
        let last = self.convs.len().saturating_sub(1);
        let mut y = x.clone();
        for (i, (conv, bn)) in self.convs.iter_mut().enumerate() {
            y = conv.forward(&y, train)?;
            tap(&format!("{prefix}.conv{}", i + 1), Layer::Conv(conv), &y);
            y = bn.forward(&y, train)?;
            tap(&format!("{prefix}.bn{}", i + 1), Layer::BatchNorm(bn), &y);
            if i < last {
                y = y.into_relu()?;
            }
        }
        if let Some(att) = &mut self.attention {
            y = att.forward(&y, train)?;
            tap(&join(prefix, att.name()), Layer::Attention(att), &y);
        }
        let shortcut = match &mut self.downsample {
            Some((conv, bn)) => {
                let s = bn.forward(&conv.forward(x, train)?, train)?;
                tap(&join(prefix, "downsample"), Layer::Downsample(conv, bn), &s);
                s
            }
            None => x.clone(),
        };
        let out = y.add(&shortcut)?.into_relu()?;
        tap(prefix, Layer::Residual, &out);
        Ok(out)
    }
}

impl Module for Block {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_traced("", x, train, &mut |_, _, _| {})
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        for (i, (conv, bn)) in self.convs.iter_mut().enumerate() {
            conv.visit(&join(prefix, &format!("conv{}", i + 1)), f);
            bn.visit(&join(prefix, &format!("bn{}", i + 1)), f);
        }
        if let Some(att) = &mut self.attention {
            att.visit(&join(prefix, att.name()), f);
        }
        if let Some((conv, bn)) = &mut self.downsample {
            conv.visit(&join(prefix, "downsample.0"), f);
            bn.visit(&join(prefix, "downsample.1"), f);
        }
    }
}

/// MobileNet's depthwise-separable block: depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6.
pub struct SeparableBlock {
    /// Depthwise 3x3 conv: one filter per channel (groups = channels); carries the stride.
    pub dw: Conv2d,
    /// Batch norm after the depthwise conv.
    pub dw_bn: BatchNorm2d,
    /// Pointwise 1x1 conv: mixes the channels and sets the block's output width.
    pub pw: Conv2d,
    /// Batch norm after the pointwise conv.
    pub pw_bn: BatchNorm2d,
}

impl SeparableBlock {
    /// [`Module::forward`] of the block named `prefix` (e.g. `blocks.0`), calling `tap` after
    /// each conv and batch norm (see [`Model::forward_traced`]).
    pub fn forward_traced(
        &mut self,
        prefix: &str,
        x: &Tensor,
        train: bool,
        tap: &mut Tap<'_>,
    ) -> Result<Tensor> {
        let relu6 = Activation::Relu6;
        let y = self.dw.forward(x, train)?;
        tap(&join(prefix, "dw"), Layer::Conv(&self.dw), &y);
        let y = self.dw_bn.forward(&y, train)?;
        tap(&join(prefix, "dw_bn"), Layer::BatchNorm(&self.dw_bn), &y);
        let y = self.pw.forward(&relu6.apply(&y)?, train)?;
        tap(&join(prefix, "pw"), Layer::Conv(&self.pw), &y);
        let y = self.pw_bn.forward(&y, train)?;
        tap(&join(prefix, "pw_bn"), Layer::BatchNorm(&self.pw_bn), &y);
        relu6.apply(&y)
    }
}

impl Module for SeparableBlock {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_traced("", x, train, &mut |_, _, _| {})
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        self.dw.visit(&join(prefix, "dw"), f);
        self.dw_bn.visit(&join(prefix, "dw_bn"), f);
        self.pw.visit(&join(prefix, "pw"), f);
        self.pw_bn.visit(&join(prefix, "pw_bn"), f);
    }
}

/// What sits between the stem and the head.
pub enum Body {
    /// `layer1`..`layer4`, each a list of residual blocks.
    Stages(Vec<Vec<Block>>),
    /// MobileNet's 13 `blocks`.
    Separable(Vec<SeparableBlock>),
}

/// A network of the family: stem (`conv1`, `bn1`, optional max pool), body, global average
/// pooling, `fc`. Build one with [`crate::build`].
pub struct Model {
    config: ModelConfig,
    /// The stem's conv: 7x7/2 (imagenet stem), 3x3/1 (cifar stem), MobileNet's 3x3.
    pub conv1: Conv2d,
    /// The stem's batch norm.
    pub bn1: BatchNorm2d,
    /// The imagenet stem's 3x3/2 max pool.
    pub maxpool: Option<Pool2dOptions>,
    /// The blocks between the stem and the head.
    pub body: Body,
    /// The head: pooled features in, one logit per class out.
    pub fc: Linear,
}

impl Model {
    /// What this model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Where the weights live.
    pub fn device(&self) -> Device {
        self.conv1.weight.device()
    }

    /// [`Module::forward`], calling `tap` after every layer with its `state_dict`-style name
    /// (`conv1`, `layer1.0.conv1`, `layer1.0.sae`, `layer1.0` for a block's output, `avgpool`,
    /// `fc`, ...). [`crate::summary`] builds its table this way.
    pub fn forward_traced(&mut self, x: &Tensor, train: bool, tap: &mut Tap<'_>) -> Result<Tensor> {
        let act = match self.body {
            Body::Stages(_) => Activation::Relu,
            Body::Separable(_) => Activation::Relu6,
        };
        let y = self.conv1.forward(x, train)?;
        tap("conv1", Layer::Conv(&self.conv1), &y);
        let y = self.bn1.forward(&y, train)?;
        tap("bn1", Layer::BatchNorm(&self.bn1), &y);
        let mut y = act.apply_owned(y)?;
        if let Some(opts) = self.maxpool {
            y = y.max_pool2d(opts)?;
            tap("maxpool", Layer::MaxPool(opts), &y);
        }
        match &mut self.body {
            Body::Stages(stages) => {
                for (s, blocks) in stages.iter_mut().enumerate() {
                    for (b, block) in blocks.iter_mut().enumerate() {
                        y = block.forward_traced(&format!("layer{}.{b}", s + 1), &y, train, tap)?;
                    }
                }
            }
            Body::Separable(blocks) => {
                for (i, block) in blocks.iter_mut().enumerate() {
                    y = block.forward_traced(&format!("blocks.{i}"), &y, train, tap)?;
                }
            }
        }
        let y = y.global_avg_pool2d()?;
        tap("avgpool", Layer::GlobalAvgPool, &y);
        let y = self.fc.forward(&y, train)?;
        tap("fc", Layer::Linear(&self.fc), &y);
        Ok(y)
    }
}

impl Module for Model {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_traced(x, train, &mut |_, _, _| {})
    }

    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        self.conv1.visit(&join(prefix, "conv1"), f);
        self.bn1.visit(&join(prefix, "bn1"), f);
        match &mut self.body {
            Body::Stages(stages) => {
                for (s, blocks) in stages.iter_mut().enumerate() {
                    for (b, block) in blocks.iter_mut().enumerate() {
                        block.visit(&join(prefix, &format!("layer{}.{b}", s + 1)), f);
                    }
                }
            }
            Body::Separable(blocks) => {
                for (i, block) in blocks.iter_mut().enumerate() {
                    block.visit(&join(prefix, &format!("blocks.{i}")), f);
                }
            }
        }
        self.fc.visit(&join(prefix, "fc"), f);
    }
}

/// Builds the model `config` describes, its weights drawn from `StdRng::seed_from_u64(seed)`
/// in module (`state_dict`) order, so one seed always gives the same model. The config is
/// validated first ([`ModelConfig::validate`]).
///
/// ```
/// use senet_models::{build, Family, ModelConfig, Preset};
/// use senet_nn::Module;
/// let config = ModelConfig::new(Family::SeNetV2, Some(9), Preset::Paper, 10);
/// let mut model = build(&config, 0)?;
/// // PyTorch's count, then Keras's (plus batch norm's running statistics): MODELS.md's table.
/// assert_eq!(model.count_parameters(), (9_443_050, 9_462_378));
/// # Ok::<(), senet_nn::Error>(())
/// ```
pub fn build(config: &ModelConfig, seed: u64) -> Result<Model> {
    config.validate()?;
    let settings = config.settings();
    let mut m = Maker {
        rng: StdRng::seed_from_u64(seed),
        s: settings,
    };
    match config.family {
        Family::MobileNet => build_mobilenet(config, &mut m),
        _ => build_resnet(config, &mut m),
    }
}

/// (output channels, stride) of MobileNet v1's 13 separable blocks at width 1.0.
const MOBILENET_BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

fn build_resnet(config: &ModelConfig, m: &mut Maker) -> Result<Model> {
    // `validate` checked that the depth exists.
    let (kind, counts) = stages(config.depth.unwrap_or(0))
        .ok_or_else(|| senet_nn::Error::Config("a validated config has a known depth".into()))?;
    let (w, s, family) = (config.width, m.s, config.family);
    let (conv1, maxpool) = match s.stem {
        Stem::Imagenet => (
            m.conv(3, w, 7, 2, 1, s.conv_bias),
            Some(Pool2dOptions::new(3, 2, 1)),
        ),
        Stem::Cifar => (m.conv(3, w, 3, 1, 1, s.conv_bias), None),
    };
    let bn1 = m.bn(w);
    let mut cin = w;
    let mut stages_out = Vec::new();
    for (stage, &n) in counts.iter().enumerate() {
        let f = w << stage;
        let mut blocks = Vec::new();
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let (block, cout) = match kind {
                BlockKind::Basic => m.basic(cin, f, stride, family),
                BlockKind::Bottleneck => {
                    // ResNeXt 32x4d at width 64: the 3x3 conv has 2w*2^s channels in 32 groups.
                    let (mid, groups) = if family.is_resnext() {
                        (2 * f, 32)
                    } else {
                        (f, 1)
                    };
                    m.bottleneck(cin, mid, groups, 4 * f, stride, family)
                }
            };
            blocks.push(block);
            cin = cout;
        }
        stages_out.push(blocks);
    }
    let fc = m.linear(cin, config.classes, true);
    Ok(Model {
        config: config.clone(),
        conv1,
        bn1,
        maxpool,
        body: Body::Stages(stages_out),
        fc,
    })
}

fn build_mobilenet(config: &ModelConfig, m: &mut Maker) -> Result<Model> {
    // Channels scale by width / 64, as Keras's alpha does (width 64 is MobileNet 1.0).
    let scale = |c: usize| c * config.width / 64;
    let stride = match m.s.stem {
        Stem::Imagenet => 2,
        Stem::Cifar => 1,
    };
    let mut cin = scale(32);
    let conv1 = m.conv(3, cin, 3, stride, 1, false);
    let bn1 = m.bn(cin);
    let mut blocks = Vec::new();
    for (cout, stride) in MOBILENET_BLOCKS {
        let cout = scale(cout);
        blocks.push(SeparableBlock {
            dw: m.depthwise(cin, stride),
            dw_bn: m.bn(cin),
            pw: m.conv(cin, cout, 1, 1, 1, false),
            pw_bn: m.bn(cout),
        });
        cin = cout;
    }
    let fc = m.linear(cin, config.classes, true);
    Ok(Model {
        config: config.clone(),
        conv1,
        bn1,
        maxpool: None,
        body: Body::Separable(blocks),
        fc,
    })
}

/// Makes layers with the preset's settings, drawing initial weights from one rng in the order
/// the layers are made.
struct Maker {
    rng: StdRng,
    s: Settings,
}

impl Maker {
    /// A `k`x`k` conv, padding `k/2`.
    fn conv(
        &mut self,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        bias: bool,
    ) -> Conv2d {
        self.conv_layer([cout, cin / groups, k, k], stride, groups, bias, false)
    }

    /// MobileNet's depthwise 3x3 conv (no bias): Keras's DepthwiseConv2D, whose kernel fans
    /// differ from those of a Conv2D with as many groups as channels.
    fn depthwise(&mut self, channels: usize, stride: usize) -> Conv2d {
        self.conv_layer([channels, 1, 3, 3], stride, channels, false, true)
    }

    fn conv_layer(
        &mut self,
        shape: [usize; 4],
        stride: usize,
        groups: usize,
        bias: bool,
        depthwise: bool,
    ) -> Conv2d {
        let (cout, fan_in) = (shape[0], shape[1..].iter().product());
        let rng = &mut self.rng;
        let (weight, bias) = match self.s.init {
            Init::Keras => {
                let (fi, fo) = init::keras_conv_fans(&shape, depthwise);
                let w = init::glorot_uniform(&shape, fi, fo, rng);
                (w, bias.then(|| Tensor::zeros(&[cout])))
            }
            // torchvision re-initializes conv weights only; a bias keeps PyTorch's default.
            Init::Torch => {
                let w = init::kaiming_normal_fan_out(&shape, rng);
                (w, bias.then(|| init::torch_default(&[cout], fan_in, rng)))
            }
        };
        let padding = shape[2] / 2;
        Conv2d::new(
            weight,
            bias,
            Conv2dOptions::new(stride, padding).groups(groups),
        )
    }

    fn bn(&self, c: usize) -> BatchNorm2d {
        BatchNorm2d::new(c, self.s.bn_eps, self.s.bn_momentum)
    }

    fn linear(&mut self, cin: usize, cout: usize, bias: bool) -> Linear {
        let shape = [cout, cin];
        let rng = &mut self.rng;
        let (weight, bias) = match self.s.init {
            Init::Keras => {
                let w = init::glorot_uniform(&shape, cin, cout, rng);
                (w, bias.then(|| Tensor::zeros(&[cout])))
            }
            Init::Torch => {
                let w = init::torch_default(&shape, cin, rng);
                (w, bias.then(|| init::torch_default(&[cout], cin, rng)))
            }
        };
        Linear::new(weight, bias)
    }

    /// The family's SE/SaE on `c` channels, hidden width `max(1, c / r)`.
    fn attention(&mut self, c: usize, family: Family) -> Option<Attention> {
        let s = self.s;
        let h = (c / s.reduction).max(1);
        Some(match family.attention()? {
            AttentionKind::Se => Attention::Se(Se {
                fc1: self.linear(c, h, s.fc_bias),
                fc2: self.linear(h, c, s.fc_bias),
                combine: s.combine,
            }),
            AttentionKind::Sae => Attention::Sae(Sae {
                branches: GroupedLinear::new(
                    (0..s.cardinality)
                        .map(|_| self.linear(c, h, s.fc_bias))
                        .collect(),
                ),
                fc: self.linear(s.cardinality * h, c, s.fc_bias),
                combine: s.combine,
            }),
        })
    }

    /// The projection shortcut, where the block changes stride or width.
    fn downsample(
        &mut self,
        cin: usize,
        cout: usize,
        stride: usize,
    ) -> Option<(Conv2d, BatchNorm2d)> {
        (stride != 1 || cin != cout).then(|| {
            (
                self.conv(cin, cout, 1, stride, 1, self.s.conv_bias),
                self.bn(cout),
            )
        })
    }

    /// Two 3x3 convs of `f` channels; returns the block and its output width.
    fn basic(&mut self, cin: usize, f: usize, stride: usize, family: Family) -> (Block, usize) {
        let b = self.s.conv_bias;
        let convs = vec![
            (self.conv(cin, f, 3, stride, 1, b), self.bn(f)),
            (self.conv(f, f, 3, 1, 1, b), self.bn(f)),
        ];
        let attention = self.attention(f, family);
        let downsample = self.downsample(cin, f, stride);
        (
            Block {
                convs,
                attention,
                downsample,
            },
            f,
        )
    }

    /// 1x1 to `mid`, 3x3 (stride, `groups`), 1x1 to `out`; returns the block and `out`.
    fn bottleneck(
        &mut self,
        cin: usize,
        mid: usize,
        groups: usize,
        out: usize,
        stride: usize,
        family: Family,
    ) -> (Block, usize) {
        let b = self.s.conv_bias;
        let convs = vec![
            (self.conv(cin, mid, 1, 1, 1, b), self.bn(mid)),
            (self.conv(mid, mid, 3, stride, groups, b), self.bn(mid)),
            (self.conv(mid, out, 1, 1, 1, b), self.bn(out)),
        ];
        let attention = self.attention(out, family);
        let downsample = self.downsample(cin, out, stride);
        (
            Block {
                convs,
                attention,
                downsample,
            },
            out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_can_move_to_another_thread() {
        // Trainers build on one thread and run on another.
        fn send<T: Send>() {}
        send::<Model>();
    }

    #[test]
    fn resnext_blocks_use_32_groups_and_mobilenet_depthwise_convs() {
        let mut c = ModelConfig::new(Family::SeNeXtV2, Some(9), crate::Preset::Cifar, 10);
        c.width = 16;
        let m = build(&c, 0).unwrap();
        let Body::Stages(stages) = &m.body else {
            panic!("stages")
        };
        for (s, stage) in stages.iter().enumerate() {
            let conv2 = &stage[0].convs[1].0;
            assert_eq!(conv2.options.groups, 32);
            // 2 * width * 2^s channels, 32 groups of 2^s input channels.
            assert_eq!(conv2.weight.shape(), [32 << s, 1 << s, 3, 3]);
            assert_eq!(conv2.options.stride, if s == 0 { (1, 1) } else { (2, 2) });
        }
        let mut c = ModelConfig::new(Family::MobileNet, None, crate::Preset::Paper, 10);
        c.width = 8;
        let m = build(&c, 0).unwrap();
        assert_eq!(m.conv1.weight.shape(), [4, 3, 3, 3]);
        assert_eq!(m.conv1.options.stride, (2, 2));
        let Body::Separable(blocks) = &m.body else {
            panic!("separable")
        };
        assert_eq!(blocks.len(), 13);
        assert_eq!(blocks[12].dw.weight.shape(), [128, 1, 3, 3]);
        assert_eq!(blocks[12].dw.options.groups, 128);
        assert_eq!(m.fc.weight.shape(), [10, 128]);
    }
}
