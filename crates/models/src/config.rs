//! What to build: the family, depth, preset and the options that override the preset, all
//! nameable as strings (command-line flags, checkpoint metadata) and checked before building.
use senet_nn::attention::Combine;
use senet_nn::{Error, Result};
use std::fmt;
use std::str::FromStr;

fn config_error(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// Writes `name` for each value and parses it back, with an error that lists the valid names.
macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+ $(,)?) => {
        impl $ty {
            #[doc = concat!("Every ", $what, ", in declaration order.")]
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            #[doc = concat!("The ", $what, "'s name in flags, config files and checkpoint metadata \
                (what `Display` writes and `FromStr` reads).")]
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<_> = $ty::ALL.iter().map(|v| v.name()).collect();
                    config_error(format!("unknown {} {s:?}: one of {}", $what, names.join(", ")))
                })
            }
        }
    };
}

/// The network families of MODELS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `resnet`: residual blocks with no channel attention (the baseline).
    ResNet,
    /// `se-resnet`: ResNet with a squeeze-and-excitation (SE) module in every block.
    SeResNet,
    /// `senetv2`: ResNet with the paper's squeeze-aggregated-excitation (SaE) module in every
    /// block.
    SeNetV2,
    /// `resnext`: ResNet whose 3x3 convs are split into 32 groups; no attention.
    ResNeXt,
    /// `se-resnext`: ResNeXt with SE.
    SeResNeXt,
    /// `senextv2`: ResNeXt with SaE.
    SeNeXtV2,
    /// `mobilenet`: MobileNet v1, depthwise-separable convs without shortcuts (no depth).
    MobileNet,
}

named_enum!(Family, "family",
    ResNet => "resnet", SeResNet => "se-resnet", SeNetV2 => "senetv2",
    ResNeXt => "resnext", SeResNeXt => "se-resnext", SeNeXtV2 => "senextv2",
    MobileNet => "mobilenet",
);

/// The channel attention a family puts in its residual blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// Squeeze-and-excitation, named `se` in checkpoints.
    Se,
    /// Squeeze-aggregated-excitation (SENetV2), named `sae`.
    Sae,
}

impl Family {
    /// The attention module in the family's residual blocks (`None` for resnet, resnext and
    /// mobilenet).
    pub fn attention(self) -> Option<AttentionKind> {
        match self {
            Family::SeResNet | Family::SeResNeXt => Some(AttentionKind::Se),
            Family::SeNetV2 | Family::SeNeXtV2 => Some(AttentionKind::Sae),
            Family::ResNet | Family::ResNeXt | Family::MobileNet => None,
        }
    }

    /// ResNeXt-style: grouped 3x3 convs (32 groups), bottleneck depths only.
    pub fn is_resnext(self) -> bool {
        matches!(self, Family::ResNeXt | Family::SeResNeXt | Family::SeNeXtV2)
    }
}

/// The two presets of MODELS.md: the paper's Keras setup, and a sound CIFAR ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// `paper`: imagenet stem, conv biases, SE/SaE `r = 32`, `residual` combine, Keras init.
    Paper,
    /// `cifar`: cifar stem, no conv biases, SE/SaE `r = 16`, `scale` combine, torchvision init.
    Cifar,
}

named_enum!(Preset, "preset", Paper => "paper", Cifar => "cifar");

/// `imagenet`: conv 7x7/2 + BN + ReLU + max pool 3x3/2; `cifar`: conv 3x3/1 + BN + ReLU.
/// For MobileNet only the first conv's stride follows it (2 for imagenet, 1 for cifar).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stem {
    /// Downsamples 4x before stage 1 (32x32 images become 8x8): cheap, built for large images.
    Imagenet,
    /// Keeps the input's resolution: the usual stem for 32x32 images.
    Cifar,
}

named_enum!(Stem, "stem", Imagenet => "imagenet", Cifar => "cifar");

/// How weights start out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Init {
    /// Keras: Glorot uniform for conv and dense kernels (Keras's own fans), zero biases.
    Keras,
    /// torchvision: Kaiming normal (fan-out) for conv weights, PyTorch's default uniform for
    /// linear layers and for conv biases.
    Torch,
}

named_enum!(Init, "init", Keras => "keras", Torch => "torch");

/// Every setting a preset decides, after a config's overrides are applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The layers before stage 1.
    pub stem: Stem,
    /// Biases on the conv layers (never on MobileNet's).
    pub conv_bias: bool,
    /// Batch norm's epsilon, added to the variance before the square root.
    pub bn_eps: f64,
    /// PyTorch convention: `running = (1 - momentum) * running + momentum * batch`.
    pub bn_momentum: f64,
    /// SE/SaE hidden width is `max(1, C / reduction)`.
    pub reduction: usize,
    /// SaE branches.
    pub cardinality: usize,
    /// Biases on the SE/SaE dense layers (the head always has one).
    pub fc_bias: bool,
    /// How the attention's per-channel scale `s` meets the branch `x`: `x * s` or `x + x * s`.
    pub combine: Combine,
    /// How the initial weights are drawn.
    pub init: Init,
}

impl Preset {
    /// The preset's settings for `family` (MobileNet has its own BN eps and no conv biases).
    pub fn settings(self, family: Family) -> Settings {
        let mobilenet = family == Family::MobileNet;
        match self {
            Preset::Paper => Settings {
                stem: Stem::Imagenet,
                conv_bias: !mobilenet,
                bn_eps: if mobilenet { 1e-3 } else { 1.001e-5 },
                bn_momentum: 0.01,
                reduction: 32,
                cardinality: 4,
                fc_bias: true,
                combine: Combine::Residual,
                init: Init::Keras,
            },
            Preset::Cifar => Settings {
                stem: Stem::Cifar,
                conv_bias: false,
                bn_eps: 1e-5,
                bn_momentum: 0.1,
                reduction: 16,
                cardinality: 4,
                fc_bias: true,
                combine: Combine::Scale,
                init: Init::Torch,
            },
        }
    }
}

/// Depths of the ResNet-style families (MobileNet has none).
pub const DEPTHS: [usize; 6] = [9, 18, 26, 34, 50, 101];

/// The largest base width a config may have: stage 3 then has 8192 channels (the published
/// networks use 64). A width read from a checkpoint's metadata or a flag sizes every weight, so
/// it is capped before anything is allocated.
pub const MAX_WIDTH: usize = 1024;
/// The most classes a config may have (ImageNet-21k has 21,841).
pub const MAX_CLASSES: usize = 100_000;
/// The most SaE branches (cardinality `k`).
pub const MAX_CARDINALITY: usize = 1024;
/// The largest SE/SaE reduction ratio `r`.
pub const MAX_REDUCTION: usize = 1 << 16;

/// Basic blocks (two 3x3 convs) or bottlenecks (1x1, 3x3, 1x1 with 4x expansion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convs at the stage's width (depths 18 and 34).
    Basic,
    /// 1x1 down to the stage's width, 3x3, 1x1 up to 4x it (depths 9, 26, 50 and 101).
    Bottleneck,
}

/// Block kind and blocks per stage (layer1..layer4) of a depth.
pub fn stages(depth: usize) -> Option<(BlockKind, [usize; 4])> {
    use BlockKind::*;
    Some(match depth {
        9 => (Bottleneck, [1, 1, 1, 1]),
        18 => (Basic, [2, 2, 2, 2]),
        26 => (Bottleneck, [2, 2, 2, 2]),
        34 => (Basic, [3, 4, 6, 3]),
        50 => (Bottleneck, [3, 4, 6, 3]),
        101 => (Bottleneck, [3, 4, 23, 3]),
        _ => return None,
    })
}

/// A model to build. `None` options take the preset's value (see [`Preset::settings`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The block type and attention module.
    pub family: Family,
    /// Required for every family but MobileNet, which has none.
    pub depth: Option<usize>,
    /// Supplies every setting whose override below is `None`.
    pub preset: Preset,
    /// Base width `w`: stage s has `w * 2^s` channels (x4 after a bottleneck). 64 is the
    /// published network; MobileNet scales its channels by `w / 64` (Keras's alpha).
    pub width: usize,
    /// Outputs of the head `fc`: one logit per class.
    pub classes: usize,
    /// Overrides [`Settings::stem`].
    pub stem: Option<Stem>,
    /// Overrides [`Settings::reduction`] (SE/SaE families only).
    pub reduction: Option<usize>,
    /// Overrides [`Settings::cardinality`] (SaE families only).
    pub cardinality: Option<usize>,
    /// Overrides [`Settings::combine`] (SE/SaE families only).
    pub combine: Option<Combine>,
    /// Overrides [`Settings::conv_bias`] (not for MobileNet).
    pub conv_bias: Option<bool>,
    /// Overrides [`Settings::fc_bias`] (SE/SaE families only).
    pub fc_bias: Option<bool>,
    /// Overrides [`Settings::bn_eps`].
    pub bn_eps: Option<f64>,
    /// Overrides [`Settings::bn_momentum`].
    pub bn_momentum: Option<f64>,
    /// Overrides [`Settings::init`].
    pub init: Option<Init>,
}

impl ModelConfig {
    /// The names [`ModelConfig::set`] accepts (`-` and `_` are interchangeable).
    pub const OPTIONS: [&'static str; 14] = [
        "family",
        "depth",
        "preset",
        "width",
        "classes",
        "stem",
        "reduction",
        "cardinality",
        "combine",
        "conv_bias",
        "fc_bias",
        "bn_eps",
        "bn_momentum",
        "init",
    ];

    /// Width 64 and the preset's value for every option.
    pub fn new(family: Family, depth: Option<usize>, preset: Preset, classes: usize) -> Self {
        ModelConfig {
            family,
            depth,
            preset,
            width: 64,
            classes,
            stem: None,
            reduction: None,
            cardinality: None,
            combine: None,
            conv_bias: None,
            fc_bias: None,
            bn_eps: None,
            bn_momentum: None,
            init: None,
        }
    }

    /// `resnet-50`, `senetv2-9`, `mobilenet`.
    pub fn name(&self) -> String {
        match self.depth {
            Some(d) => format!("{}-{d}", self.family),
            None => self.family.to_string(),
        }
    }

    /// The preset's settings with this config's overrides applied (not validated).
    pub fn settings(&self) -> Settings {
        let p = self.preset.settings(self.family);
        Settings {
            stem: self.stem.unwrap_or(p.stem),
            conv_bias: self.conv_bias.unwrap_or(p.conv_bias),
            bn_eps: self.bn_eps.unwrap_or(p.bn_eps),
            bn_momentum: self.bn_momentum.unwrap_or(p.bn_momentum),
            reduction: self.reduction.unwrap_or(p.reduction),
            cardinality: self.cardinality.unwrap_or(p.cardinality),
            fc_bias: self.fc_bias.unwrap_or(p.fc_bias),
            combine: self.combine.unwrap_or(p.combine),
            init: self.init.unwrap_or(p.init),
        }
    }

    /// Sets one option from text, e.g. `set("reduction", "16")` or `set("conv-bias", "false")`.
    /// This is how `--set NAME=VALUE` and checkpoint metadata reach a config; an unknown name
    /// or a value that does not parse is an error (checking the combination is
    /// [`ModelConfig::validate`]'s job).
    ///
    /// ```
    /// use senet_models::{Family, ModelConfig, Preset};
    /// let mut c = ModelConfig::new(Family::SeNetV2, Some(9), Preset::Paper, 10);
    /// c.set("reduction", "16")?;
    /// c.set("conv-bias", "false")?;
    /// assert_eq!(c.settings().reduction, 16);
    /// assert_eq!(
    ///     c.to_string(),
    ///     "senetv2-9, preset paper, width 64, 10 classes, reduction 16, conv_bias false"
    /// );
    /// assert!(c.set("depht", "9").is_err());
    /// # Ok::<(), senet_nn::Error>(())
    /// ```
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        fn parse<T: FromStr>(name: &str, value: &str, what: &str) -> Result<T> {
            value
                .parse()
                .map_err(|_| config_error(format!("{name}: {value:?} is not {what}")))
        }
        let key = name.replace('-', "_");
        let (n, v) = (key.as_str(), value);
        match n {
            "family" => self.family = v.parse()?,
            "depth" => self.depth = Some(parse(n, v, "a depth")?),
            "preset" => self.preset = v.parse()?,
            "width" => self.width = parse(n, v, "a width")?,
            "classes" => self.classes = parse(n, v, "a number of classes")?,
            "stem" => self.stem = Some(v.parse()?),
            "reduction" => self.reduction = Some(parse(n, v, "a whole number")?),
            "cardinality" => self.cardinality = Some(parse(n, v, "a whole number")?),
            "combine" => self.combine = Some(v.parse()?),
            "conv_bias" => self.conv_bias = Some(parse(n, v, "true or false")?),
            "fc_bias" => self.fc_bias = Some(parse(n, v, "true or false")?),
            "bn_eps" => self.bn_eps = Some(parse(n, v, "a number")?),
            "bn_momentum" => self.bn_momentum = Some(parse(n, v, "a number")?),
            "init" => self.init = Some(v.parse()?),
            _ => {
                return Err(config_error(format!(
                    "unknown model option {name:?}: one of {}",
                    Self::OPTIONS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// `(name, value)` of the family, depth (if any), preset, width, classes and every option
    /// that is set, as [`ModelConfig::set`] reads them back: enough to rebuild the model.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("family", self.family.to_string())];
        if let Some(d) = self.depth {
            out.push(("depth", d.to_string()));
        }
        out.push(("preset", self.preset.to_string()));
        out.push(("width", self.width.to_string()));
        out.push(("classes", self.classes.to_string()));
        let options: [(&'static str, Option<String>); 9] = [
            ("stem", self.stem.map(|v| v.to_string())),
            ("reduction", self.reduction.map(|v| v.to_string())),
            ("cardinality", self.cardinality.map(|v| v.to_string())),
            ("combine", self.combine.map(|v| v.to_string())),
            ("conv_bias", self.conv_bias.map(|v| v.to_string())),
            ("fc_bias", self.fc_bias.map(|v| v.to_string())),
            ("bn_eps", self.bn_eps.map(|v| v.to_string())),
            ("bn_momentum", self.bn_momentum.map(|v| v.to_string())),
            ("init", self.init.map(|v| v.to_string())),
        ];
        out.extend(options.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        out
    }

    /// Checks everything [`crate::build`] needs; the message names the option to change.
    pub fn validate(&self) -> Result<()> {
        let family = self.family;
        if !(1..=MAX_CLASSES).contains(&self.classes) {
            return Err(config_error(format!(
                "classes must be 1 to {MAX_CLASSES}, got {}",
                self.classes
            )));
        }
        if !(1..=MAX_WIDTH).contains(&self.width) {
            return Err(config_error(format!(
                "width must be 1 to {MAX_WIDTH}, got {}",
                self.width
            )));
        }
        let depths = DEPTHS.map(|d| d.to_string()).join(", ");
        if family == Family::MobileNet {
            if let Some(d) = self.depth {
                return Err(config_error(format!(
                    "depth does not apply to mobilenet (it has one fixed layout), got depth {d}"
                )));
            }
            if !self.width.is_multiple_of(2) {
                return Err(config_error(format!(
                    "mobilenet needs an even width (its stem has width/2 channels), got width {}",
                    self.width
                )));
            }
        } else {
            let Some(depth) = self.depth else {
                return Err(config_error(format!(
                    "{family} needs a depth: one of {depths}"
                )));
            };
            let Some((kind, _)) = stages(depth) else {
                return Err(config_error(format!(
                    "unknown depth {depth} for {family}: one of {depths}"
                )));
            };
            if family.is_resnext() && kind != BlockKind::Bottleneck {
                return Err(config_error(format!(
                    "{family} exists only at bottleneck depths (9, 26, 50, 101), not depth {depth}"
                )));
            }
            // Stage 0's 3x3 conv has the fewest channels (2w); 2w*2^s then divides for every s.
            if family.is_resnext() && !(2 * self.width).is_multiple_of(32) {
                return Err(config_error(format!(
                    "{family} with width {}: its 3x3 convs of 2*width = {} channels do not split \
                     into 32 groups; use a width that is a multiple of 16 (16, 32, 64, ...)",
                    self.width,
                    2 * self.width
                )));
            }
        }
        if let Some(r) = self.reduction.filter(|r| !(1..=MAX_REDUCTION).contains(r)) {
            return Err(config_error(format!(
                "reduction must be 1 to {MAX_REDUCTION}, got {r}"
            )));
        }
        if let Some(c) = self
            .cardinality
            .filter(|c| !(1..=MAX_CARDINALITY).contains(c))
        {
            return Err(config_error(format!(
                "cardinality must be 1 to {MAX_CARDINALITY}, got {c}"
            )));
        }
        // An option the family has no use for is an error, not a silent no-op.
        let unused = |option: &str, why: &str| {
            config_error(format!("{option} does not apply to {family}: {why}"))
        };
        if family.attention().is_none() {
            let why = "it has no SE/SaE module";
            for (option, set) in [
                ("reduction", self.reduction.is_some()),
                ("combine", self.combine.is_some()),
                ("fc_bias", self.fc_bias.is_some()),
            ] {
                if set {
                    return Err(unused(option, why));
                }
            }
        }
        if self.cardinality.is_some() && family.attention() != Some(AttentionKind::Sae) {
            return Err(unused(
                "cardinality",
                "only SaE (senetv2, senextv2) has branches",
            ));
        }
        if self.conv_bias.is_some() && family == Family::MobileNet {
            return Err(unused(
                "conv_bias",
                "its convs never have biases (the Keras layout)",
            ));
        }
        if let Some(eps) = self.bn_eps {
            if !(eps.is_finite() && eps > 0.0) {
                return Err(config_error(format!("bn_eps must be positive, got {eps}")));
            }
        }
        if let Some(m) = self.bn_momentum {
            if !(0.0..=1.0).contains(&m) {
                return Err(config_error(format!(
                    "bn_momentum must be in [0, 1] (PyTorch convention), got {m}"
                )));
            }
        }
        Ok(())
    }
}

/// `senetv2-9, preset paper, width 64, 10 classes`, then any overrides.
impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, preset {}, width {}, {} classes",
            self.name(),
            self.preset,
            self.width,
            self.classes
        )?;
        for (k, v) in self
            .entries()
            .into_iter()
            .skip_while(|(k, _)| *k != "classes")
            .skip(1)
        {
            write!(f, ", {k} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_those_of_models_md() {
        let paper = Preset::Paper.settings(Family::SeNetV2);
        assert_eq!(
            (paper.stem, paper.conv_bias, paper.bn_eps, paper.bn_momentum),
            (Stem::Imagenet, true, 1.001e-5, 0.01)
        );
        assert_eq!(
            (paper.reduction, paper.cardinality, paper.fc_bias),
            (32, 4, true)
        );
        assert_eq!(
            (paper.combine, paper.init),
            (Combine::Residual, Init::Keras)
        );
        let cifar = Preset::Cifar.settings(Family::SeNetV2);
        assert_eq!(
            (cifar.stem, cifar.conv_bias, cifar.bn_eps, cifar.bn_momentum),
            (Stem::Cifar, false, 1e-5, 0.1)
        );
        assert_eq!(
            (cifar.reduction, cifar.cardinality, cifar.fc_bias),
            (16, 4, true)
        );
        assert_eq!((cifar.combine, cifar.init), (Combine::Scale, Init::Torch));
        let mobile = Preset::Paper.settings(Family::MobileNet);
        assert_eq!(
            (
                mobile.stem,
                mobile.conv_bias,
                mobile.bn_eps,
                mobile.bn_momentum
            ),
            (Stem::Imagenet, false, 1e-3, 0.01)
        );
        let mobile = Preset::Cifar.settings(Family::MobileNet);
        assert_eq!(
            (mobile.stem, mobile.bn_eps, mobile.bn_momentum),
            (Stem::Cifar, 1e-5, 0.1)
        );
    }

    #[test]
    fn overrides_replace_preset_values() {
        let mut c = ModelConfig::new(Family::SeResNet, Some(50), Preset::Paper, 10);
        c.set("stem", "cifar").unwrap();
        c.set("conv-bias", "false").unwrap();
        c.set("reduction", "8").unwrap();
        c.set("bn_eps", "1e-3").unwrap();
        let s = c.settings();
        assert_eq!(
            (s.stem, s.conv_bias, s.reduction, s.bn_eps),
            (Stem::Cifar, false, 8, 1e-3)
        );
        // Untouched settings keep the preset's values.
        assert_eq!(
            (s.bn_momentum, s.combine, s.init),
            (0.01, Combine::Residual, Init::Keras)
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn sizes_are_capped_before_anything_is_built() {
        let base = || ModelConfig::new(Family::SeNetV2, Some(9), Preset::Paper, 10);
        let refused = |name: &str, value: &str| {
            let mut c = base();
            c.set(name, value).unwrap();
            c.validate().unwrap_err().to_string()
        };
        assert!(refused("width", "1000000").contains("width must be 1 to 1024"));
        assert!(refused("width", "0").contains("width must be 1 to 1024"));
        assert!(refused("classes", "100001").contains("classes must be 1 to 100000"));
        assert!(refused("classes", "0").contains("classes must be 1 to 100000"));
        assert!(refused("cardinality", "4096").contains("cardinality must be 1 to 1024"));
        assert!(refused("reduction", "0").contains("reduction must be 1 to 65536"));
        // The limits themselves are allowed.
        let mut c = base();
        c.set("width", "1024").unwrap();
        c.set("classes", "100000").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn depth_table() {
        let blocks = |d| stages(d).map(|(k, n)| (k, n.iter().sum::<usize>()));
        assert_eq!(blocks(9), Some((BlockKind::Bottleneck, 4)));
        assert_eq!(blocks(18), Some((BlockKind::Basic, 8)));
        assert_eq!(blocks(26), Some((BlockKind::Bottleneck, 8)));
        assert_eq!(blocks(34), Some((BlockKind::Basic, 16)));
        assert_eq!(blocks(50), Some((BlockKind::Bottleneck, 16)));
        assert_eq!(blocks(101), Some((BlockKind::Bottleneck, 33)));
        assert_eq!(blocks(152), None);
        // Depth = weight layers: 3 per bottleneck, 2 per basic block, + stem conv + fc. The
        // paper's "depth 9" is the exception: a name for [1, 1, 1, 1], which has 14.
        for d in DEPTHS {
            let (kind, n) = blocks(d).unwrap();
            let per = if kind == BlockKind::Basic { 2 } else { 3 };
            let d = if d == 9 { 14 } else { d };
            assert_eq!(n * per + 2, d);
        }
    }
}
