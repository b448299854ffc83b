//! The model's description in checkpoint metadata (MODELS.md's keys), and loading a model from
//! a checkpoint with or without that description.
use anyhow::{bail, Context, Result};
use senet_data::Dataset;
use senet_models::{build, Model, ModelConfig};
use senet_nn::checkpoint::{self, Metadata};
use senet_nn::Module;
use senet_tensor::Device;
use std::path::Path;

/// The metadata that describes a model in a checkpoint (MODELS.md's keys).
pub fn model_metadata(model: &ModelConfig, ds: &Dataset) -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in model.entries() {
        m.insert(k.to_string(), v);
    }
    m.insert(
        "class_names".into(),
        serde_json::to_string(&ds.classes).expect("strings serialize"),
    );
    m.insert(
        "mean".into(),
        serde_json::to_string(&ds.mean).expect("floats serialize"),
    );
    m.insert(
        "std".into(),
        serde_json::to_string(&ds.std).expect("floats serialize"),
    );
    m.insert("input_size".into(), ds.image_size.to_string());
    m
}

/// A model config read back from checkpoint metadata (`None` when the file has no description).
pub fn config_from_metadata(meta: &Metadata) -> Result<Option<ModelConfig>> {
    let Some(family) = meta.get("family") else {
        return Ok(None);
    };
    let mut config = ModelConfig::new(family.parse()?, None, "paper".parse()?, 10);
    for name in ModelConfig::OPTIONS {
        if let Some(v) = meta.get(name) {
            config
                .set(name, v)
                .with_context(|| format!("checkpoint metadata {name}={v:?}"))?;
        }
    }
    Ok(Some(config))
}

/// The model a checkpoint holds: from its metadata, else from the `--model ...` flags (given
/// as the config they describe, or the error they gave, reported only when they are needed).
pub fn load_model(
    path: &Path,
    flags: &Option<Result<ModelConfig>>,
    device: Device,
) -> Result<(Model, Metadata)> {
    let meta = checkpoint::read_metadata(path)
        .with_context(|| format!("--checkpoint {}", path.display()))?;
    let config = match (config_from_metadata(&meta)?, flags) {
        (Some(c), _) => c,
        (None, Some(Ok(c))) => c.clone(),
        (None, Some(Err(e))) => bail!("{e:#}"),
        (None, None) => bail!("{} has no model description (a checkpoint exported from PyTorch?): give --model, --depth, --preset, --width and --classes", path.display()),
    };
    let mut model = build(&config, 0)?;
    checkpoint::load(&mut model, path)
        .with_context(|| format!("loading {} as {}", path.display(), config.name()))?;
    model.to_device(device)?;
    Ok((model, meta))
}
