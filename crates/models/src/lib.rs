//! The model family of `shared/MODELS.md`: ResNet, SE-ResNet, SENetV2 and their ResNeXt
//! counterparts (grouped 3x3 convs), plus MobileNet v1, built by one function.
//!
//! Describe a network with a [`ModelConfig`] — a [`Family`], a depth (9, 18, 26, 34, 50 or 101;
//! none for MobileNet), a [`Preset`] (`paper`: the paper's Keras setup; `cifar`: a torchvision-
//! style CIFAR ResNet), a base width and the number of classes, plus optional overrides of the
//! preset's settings — and call [`build`] with a seed. The [`Model`] it returns is an ordinary
//! [`senet_nn::Module`] whose parameter names and order are those of the PyTorch reference
//! (`shared/tools/reference/models_torch.py`), so checkpoints move between the two unchanged.
//! [`summary`] runs one traced forward and tabulates every layer's output shape, parameters and
//! FLOPs.
//!
//! ```
//! use senet_models::{build, summary, Family, ModelConfig, Preset};
//! let config = ModelConfig::new(Family::SeNetV2, Some(9), Preset::Paper, 10);
//! let mut model = build(&config, 0)?;
//! let table = summary(&mut model, 32)?;
//! assert!(table.to_string().contains("62.7 MFLOPs per image"));
//! # Ok::<(), senet_nn::Error>(())
//! ```

#![deny(missing_docs)]

mod config;
mod model;
mod summary;

pub use config::{
    stages, AttentionKind, BlockKind, Family, Init, ModelConfig, Preset, Settings, Stem, DEPTHS,
};
pub use model::{build, Attention, Block, Body, Layer, Model, SeparableBlock, Tap};
pub use senet_nn::attention::Combine;
pub use summary::{summary, Summary, SummaryRow};
