//! One SENetV2 block: its parameters (checked against the paper's arithmetic in
//! shared/MODELS.md) and how gradients reach them. Run it with
//! `cargo run --release --example 06_senetv2_block`.
//!
//! A SENetV2 block is a ResNet bottleneck (1x1, 3x3, 1x1 convs, each with batch norm) whose
//! branch passes through SaE, squeeze-aggregated-excitation, before the shortcut is added:
//! `z = mean over H, W` of the branch's C channels, k parallel dense layers `C -> C/r` with ReLU
//! (the "aggregated" part; one grouped op), concatenated, then a dense layer `k*C/r -> C` and a
//! sigmoid give one scale per channel, applied as `x + x * s` (the paper preset).
use rand::rngs::StdRng;
use rand::SeedableRng;
use senet::models::{build, Body, Family, ModelConfig, Preset};
use senet::nn::{Module, Slot};
use senet::Tensor;

fn main() -> anyhow::Result<()> {
    // The paper's CIFAR-10 network: senetv2-9 (bottleneck blocks [1, 1, 1, 1]), width 64.
    let config = ModelConfig::new(Family::SeNetV2, Some(9), Preset::Paper, 10);
    let s = config.settings();
    let (r, k) = (s.reduction, s.cardinality);
    let mut model = build(&config, 0)?;
    let mut resnet = build(
        &ModelConfig::new(Family::ResNet, Some(9), Preset::Paper, 10),
        0,
    )?;
    let (trainable, with_bn) = model.count_parameters();
    let (resnet_trainable, _) = resnet.count_parameters();
    println!(
        "{config}: {} trainable parameters, {} with batch-norm statistics",
        commas(trainable),
        commas(with_bn)
    );
    println!(
        "  (MODELS.md: 9,443,050 and 9,462,378; the paper's table: 9.46M, counted as Keras does)"
    );

    // The paper's arithmetic for SaE on C channels, hidden width h = C/r:
    // k branches of (C*h weights + h biases), then the dense layer (k*h*C weights + C biases).
    let sae = |c: usize| {
        let h = (c / r).max(1);
        k * (c * h + h) + (k * h * c + c)
    };
    // The four blocks end their stages with 256, 512, 1024 and 2048 channels (4x the stage's
    // width: bottlenecks expand 4x). SaE is all that senetv2 adds to resnet.
    let per_stage: Vec<usize> = (0..4)
        .map(|stage| sae((4 * config.width) << stage))
        .collect();
    let shown: Vec<String> = per_stage.iter().map(|&n| commas(n)).collect();
    println!(
        "SaE parameters per stage (r = {r}, k = {k}): {}; total {}",
        shown.join(" + "),
        commas(per_stage.iter().sum())
    );
    println!(
        "senetv2-9 minus resnet-9, counted on the built models: {} - {} = {}",
        commas(trainable),
        commas(resnet_trainable),
        commas(trainable - resnet_trainable)
    );

    // The model's body is its stages of blocks; take the first block of the first stage. Its
    // input has 64 channels (the stem's), its output 256.
    let Body::Stages(mut stages) = model.body else {
        unreachable!("a senetv2 has stages of blocks")
    };
    let mut block = stages.remove(0).remove(0);

    // Every module hands out its tensors through `visit`, named as in PyTorch's `state_dict`
    // (what makes checkpoints portable, see 07_load_pytorch_weights). Parameters are trained;
    // buffers (batch norm's running statistics) are state that gradients never reach.
    println!("\nlayer1.0, one block: its tensors");
    let mut sae_total = 0;
    let (mut params, mut buffers) = (0, 0);
    block.visit("layer1.0", &mut |name, slot| match slot {
        Slot::Param(t) => {
            println!("  {name:<42} param  {:<16} {:>6}", fmt_shape(t), t.numel());
            params += t.numel();
            if name.contains(".sae.") {
                sae_total += t.numel();
            }
        }
        Slot::Buffer(t) => {
            println!("  {name:<42} buffer {:<16} {:>6}", fmt_shape(t), t.numel());
            buffers += t.numel();
        }
        Slot::Counter(c) => println!("  {name:<42} counter = {c}"),
    });
    println!(
        "  {} parameters, {} of them in SaE (the formula: {}); {} buffer values",
        commas(params),
        commas(sae_total),
        commas(sae(256)),
        commas(buffers)
    );

    // Gradient flow: a forward pass in training mode (batch norm uses the batch's statistics)
    // on a small seeded input, a scalar loss, and backward.
    let mut rng = StdRng::seed_from_u64(0);
    let x = Tensor::randn(&[2, 64, 8, 8], &mut rng).requires_grad();
    let y = block.forward(&x, true)?;
    let loss = y.mul(&y)?.mean_all()?;
    let grads = loss.backward()?;
    println!(
        "\nforward {:?} -> {:?}, loss = mean(y^2) = {:.4}",
        x.shape(),
        y.shape(),
        loss.item()?
    );
    println!("gradient norms |d loss / d p|:");
    for (name, p) in block.parameters() {
        let g = grads
            .get(&p)
            .expect("every parameter is on the path to the loss");
        println!("  layer1.0.{name:<33} {:.3e}", norm(g)?);
    }
    // The input's gradient is the sum of what comes back through the branch and through the
    // shortcut (here the 1x1 downsample conv): a tensor used twice adds its gradients.
    println!(
        "  input x                                    {:.3e}",
        norm(grads.get(&x).unwrap())?
    );
    // Why the conv biases get (almost) nothing: in training mode batch norm subtracts each
    // channel's batch mean, so a per-channel constant added just before it cancels out; what
    // remains is rounding. Hence torchvision's convs have no bias (the cifar preset).
    println!(
        "(the conv biases get 1e-8 or less, rounding: the batch norm after each conv cancels them)"
    );
    Ok(())
}

/// `9443050` as `9,443,050`.
fn commas(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn fmt_shape(t: &Tensor) -> String {
    format!("{:?}", t.shape())
}

/// The Euclidean norm of all the elements.
fn norm(t: &Tensor) -> senet::Result<f64> {
    Ok(t.to_vec::<f64>()?.iter().map(|v| v * v).sum::<f64>().sqrt())
}
