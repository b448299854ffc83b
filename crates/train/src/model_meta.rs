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

/// Refuses a description whose model could not fit in the file: each cap on width, classes and
/// depth holds, but together they allow a model of tens of GB, and a 300-byte file claiming one
/// would have it built (and the process killed for memory) before its tensors are compared.
/// The parameter count is estimated from the same model at width 16 with 1 and 2 classes
/// (megabytes to build): convolutions grow with the square of the width, the classifier with
/// width times classes. A real checkpoint holds every parameter as 4 bytes, so an estimate over
/// twice the file (plus 1 MiB) cannot be one.
fn check_size_against_file(config: &ModelConfig, path: &Path) -> Result<()> {
    config.validate()?;
    if config.width <= 16 {
        return Ok(()); // small enough to build and compare
    }
    let file = std::fs::metadata(path)
        .with_context(|| format!("--checkpoint {}", path.display()))?
        .len();
    // A description that is invalid at width 16 fails the real build with its own message.
    let Some(estimate) = estimated_parameters(config) else {
        return Ok(());
    };
    if 4.0 * estimate > 2.0 * file as f64 + (1 << 20) as f64 {
        bail!(
            "{} describes {} (about {:.0} million parameters, {:.1} GB), but the file holds only {file} bytes: not a checkpoint of that model",
            path.display(),
            config,
            estimate / 1e6,
            4.0 * estimate / 1e9
        );
    }
    Ok(())
}

/// The trainable parameters of `config`, estimated from the same model at width 16 (see
/// [`check_size_against_file`]); `None` when that model cannot be built.
fn estimated_parameters(config: &ModelConfig) -> Option<f64> {
    let probe = |classes: usize| -> Option<f64> {
        let mut c = config.clone();
        (c.width, c.classes) = (16, classes);
        Some(build(&c, 0).ok()?.count_parameters().0 as f64)
    };
    let (one, two) = (probe(1)?, probe(2)?);
    let fc_in = two - one;
    let scale = config.width as f64 / 16.0;
    Some((one - fc_in) * scale * scale + fc_in * scale * config.classes as f64)
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
    check_size_against_file(&config, path)?;
    let mut model = build(&config, 0)?;
    checkpoint::load(&mut model, path)
        .with_context(|| format!("loading {} as {}", path.display(), config.name()))?;
    model.to_device(device)?;
    Ok((model, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_estimate_is_close_for_every_family() {
        for (family, depth, preset, width, classes) in [
            ("senetv2", Some(9), "paper", 64, 10),
            ("resnet", Some(18), "cifar", 64, 100),
            ("se-resnet", Some(26), "paper", 32, 10),
            ("senextv2", Some(9), "cifar", 32, 10),
            ("mobilenet", None, "paper", 64, 1000),
        ] {
            let mut c = ModelConfig::new(
                family.parse().unwrap(),
                depth,
                preset.parse().unwrap(),
                classes,
            );
            c.width = width;
            let actual = build(&c, 0).unwrap().count_parameters().0 as f64;
            let estimate = estimated_parameters(&c).unwrap();
            let ratio = estimate / actual;
            // Well inside the factor of 2 the file check allows.
            assert!((0.8..1.25).contains(&ratio), "{c}: {estimate} vs {actual}");
        }
    }
}
