//! Weights saved by PyTorch, run here: load the committed fixture (a SENetV2 built and
//! initialized by the PyTorch reference of the model family, its `state_dict` saved with
//! `safetensors.torch.save_file`; see tests/fixtures/README.md) into our model and compare the
//! logits with the ones PyTorch recorded. Run it with
//! `cargo run --release --example 07_load_pytorch_weights`.
use safetensors::SafeTensors;
use senet::commands::CIFAR10_CLASSES;
use senet::data::{CIFAR10_MEAN, CIFAR10_STD};
use senet::models::{build, Family, ModelConfig, Preset};
use senet::nn::checkpoint;
use senet::nn::{Module, Slot};
use senet::no_grad;
use senet::tensor::Device;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch");
    let weights = dir.join("senetv2-9-paper-w8.safetensors");

    // 1. The same architecture as PyTorch's `Net("senetv2", 9, 10, cfg=PAPER, width=8)`. A file
    //    saved by PyTorch carries no description of the model, so we say what it is. `build`
    //    draws random weights (seed 0); loading replaces every one of them.
    let mut config = ModelConfig::new(Family::SeNetV2, Some(9), Preset::Paper, 10);
    config.width = 8;
    let mut model = build(&config, 0)?;

    // 2. A safetensors file is a JSON header (name -> dtype, shape, byte range) and the raw
    //    bytes. PyTorch's names are `state_dict` keys, and our modules name their tensors the
    //    same way (`Module::visit`), so they match one for one, with no conversion table.
    let bytes = std::fs::read(&weights)?;
    let file = SafeTensors::deserialize(&bytes)?;
    let mut ours = Vec::new();
    model.visit("", &mut |name, slot| {
        let shape = match slot {
            Slot::Param(t) | Slot::Buffer(t) => t.shape().to_vec(),
            Slot::Counter(_) => vec![], // batch norm's step count: an int64 scalar in the file
        };
        ours.push((name.to_string(), shape));
    });
    let same = ours
        .iter()
        .filter(|(name, shape)| {
            file.tensor(name)
                .is_ok_and(|t| t.shape() == shape.as_slice())
        })
        .count();
    println!(
        "{}: {} tensors",
        weights.file_name().unwrap().to_string_lossy(),
        file.len()
    );
    println!(
        "our {config}: {} named tensors, {same} of them in the file with the same shape",
        ours.len()
    );
    for name in [
        "conv1.weight",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "layer1.0.sae.branches.0.weight",
        "layer1.0.sae.fc.weight",
        "fc.weight",
    ] {
        let t = file.tensor(name)?;
        println!("  {name:<32} {:?} {:?}", t.dtype(), t.shape());
    }

    // `checkpoint::load` does that check itself: it changes nothing unless every tensor the
    // model has is in the file with the right shape, and otherwise names the one that is not.
    checkpoint::load(&mut model, &weights)?;

    // 3. The inputs PyTorch ran and the logits it got, in eval mode (batch norm uses its running
    //    statistics), once in f32 and once in f64.
    let (mut io, _) =
        checkpoint::load_tensors(&dir.join("senetv2-9-paper-w8.io.safetensors"), Device::Cpu)?;
    let mut take = |name: &str| io.remove(name).expect("the fixture holds it");
    let (x, torch, torch64) = (take("input"), take("logits"), take("logits_f64"));
    println!(
        "input {:?}, PyTorch's logits {:?}",
        x.shape(),
        torch.shape()
    );

    // Input 0 is image.png after CIFAR-10 normalization: `(pixel / 255 - mean) / std` per
    // channel, in planar order [3, 32, 32] (all red, then green, then blue). Redo it.
    let img = image::open(dir.join("image.png"))?.to_rgb8();
    let planar: Vec<f32> = (0..3)
        .flat_map(|c| {
            img.pixels()
                .map(move |p| (p[c] as f32 / 255.0 - CIFAR10_MEAN[c]) / CIFAR10_STD[c])
        })
        .collect();
    let first = x.narrow(0, 0, 1)?.to_vec::<f32>()?;
    println!(
        "image.png, normalized here: max |ours - input 0| = {:.1e}",
        max_diff(&planar, &first)
    );

    // 4. Our forward pass in eval mode. `no_grad`: inference records no graph.
    let logits = no_grad(|| model.forward(&x, false))?;
    let (ours, torch, torch64) = (
        logits.to_vec::<f32>()?,
        torch.to_vec::<f32>()?,
        torch64.to_vec::<f32>()?,
    );
    println!("logits of image.png:");
    println!("  ours    {}", fmt_row(&ours[..10]));
    println!("  PyTorch {}", fmt_row(&torch[..10]));
    println!(
        "max |ours - PyTorch| over all 3 x 10 logits: {:.1e} (f32 pass), {:.1e} (f64 pass)",
        max_diff(&ours, &torch),
        max_diff(&ours, &torch64)
    );
    let top = |v: &[f32]| (0..10).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    println!(
        "top class of image.png: {} (ours), {} (PyTorch); the weights are untrained, so a guess",
        CIFAR10_CLASSES[top(&ours)],
        CIFAR10_CLASSES[top(&torch)]
    );

    // The difference is rounding (f32 sums in another order). A real mistake is far bigger:
    // the same pass in training mode (batch statistics instead of the running ones) gives
    let train_mode = no_grad(|| model.forward(&x, true))?.to_vec::<f32>()?;
    println!(
        "in training mode by mistake: max |ours - PyTorch| = {:.2}",
        max_diff(&train_mode, &torch)
    );
    Ok(())
}

fn fmt_row(v: &[f32]) -> String {
    let cells: Vec<String> = v.iter().map(|x| format!("{x:7.4}")).collect();
    cells.join(" ")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
