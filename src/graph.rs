//! `senet graph`: the autograd graph of one training step, as a Graphviz DOT file (and an SVG
//! picture of it with `--svg`).
//!
//! It builds the model, runs the forward pass and the cross-entropy loss of one step on a
//! random batch with gradients recorded — exactly what `senet train` does before it calls
//! `backward` — and hands the loss to [`crate::tensor::graph::Graph`], which describes every
//! op, parameter and saved tensor behind it.
use crate::models::build;
use crate::nn::checkpoint::write_atomically;
use crate::nn::Module;
use crate::tensor::graph::{human_bytes, Graph};
use crate::tensor::Tensor;
use crate::train::args::{count_in, MAX_BATCH, MAX_IMAGE_SIZE};
use crate::train::ModelArgs;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The flags of `senet graph`.
#[derive(clap::Args, Clone, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images in the random batch; 1 to 65536. The graph has the same ops at any batch size;
    /// the bytes saved for backward grow with it.
    #[arg(long, default_value_t = 2, value_parser = count_in::<1, MAX_BATCH>)]
    pub batch: usize,
    /// Side of the random square images, in pixels (the models take 32 for CIFAR); 1 to 4096.
    #[arg(
        long,
        visible_alias = "input-size",
        default_value_t = 32,
        value_parser = count_in::<1, MAX_IMAGE_SIZE>
    )]
    pub image_size: usize,
    /// Seed of the weights, the random images and their labels.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The DOT file to write (Graphviz's graph language; any text editor reads it): one box per
    /// op with its output shape and the tensors it saves for backward, one per parameter with
    /// its name, an arrow from every input to the op that reads it.
    #[arg(long, value_name = "FILE.dot")]
    pub out: PathBuf,
    /// Also draw the graph as FILE.svg (FILE.dot's name with .svg) with Graphviz's `dot -Tsvg`,
    /// which must be on PATH (apt-get install graphviz, brew install graphviz); given up after
    /// 60 seconds.
    #[arg(long)]
    pub svg: bool,
}

/// How long `dot` may take to draw the SVG before it is killed.
pub const DOT_DEADLINE: Duration = Duration::from_secs(60);

/// The most input values the random batch may hold (1 GiB of f32), as in `senet bench`: each
/// flag is bounded, but their product sizes the batch.
const MAX_INPUT_VALUES: usize = 1 << 28;

/// `senet graph`: writes the graph of one training step to `--out`, and with `--svg` draws it.
pub fn graph(a: &GraphArgs) -> Result<ExitCode> {
    let config = a.model.config(a.model.classes.unwrap_or(10))?;
    let (batch, size) = (a.batch, a.image_size);
    if batch == 0 || size == 0 {
        bail!("--batch and --image-size must be at least 1, got {batch} and {size}");
    }
    let values = batch.saturating_mul(3 * size * size);
    if values > MAX_INPUT_VALUES {
        bail!(
            "--batch {batch} of {size}x{size} images is {values} values, over the cap of \
             {MAX_INPUT_VALUES} (1 GiB): lower --batch or --image-size"
        );
    }
    // Everything that can be wrong with the request is checked before the model is built.
    let svg = if a.svg {
        Some((svg_path(&a.out)?, find_dot()?))
    } else {
        None
    };

    let mut model = build(&config, a.seed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let images = Tensor::randn(&[batch, 3, size, size], &mut rng);
    let labels: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..config.classes as u32))
        .collect();
    // The forward pass and loss of a training step (batch norm in training mode), recorded.
    let logits = model.forward(&images, true).with_context(|| {
        format!(
            "the forward pass of {} on {size}x{size} images",
            config.name()
        )
    })?;
    let loss = logits.cross_entropy(&labels, 0.0)?;

    let mut g = Graph::of(&loss);
    let parameters = model.parameters();
    g.name(parameters.iter().map(|(name, t)| (name.as_str(), t)));
    g.name([("images", &images), ("loss", &loss)]);
    let title = format!(
        "{} (width {}, {} classes): one training step, batch {batch} of {size}x{size} images",
        config.name(),
        config.width,
        config.classes
    );
    write_atomically(&a.out, g.to_dot(&title).as_bytes())
        .context("writing the DOT file (--out)")?;
    println!(
        "{}: {} nodes ({} ops, {} parameters); saved for backward: {} bytes ({})",
        a.out.display(),
        g.nodes.len(),
        g.op_count(),
        g.parameter_count(),
        g.saved_bytes(),
        human_bytes(g.saved_bytes())
    );
    if let Some((svg, dot)) = svg {
        render_svg(&dot, &a.out, &svg, DOT_DEADLINE)?;
        println!("{}: drawn by {}", svg.display(), dot.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `FILE.svg` for `FILE.dot` (or `FILE` + `.svg`); an error when that is the DOT file itself.
fn svg_path(out: &Path) -> Result<PathBuf> {
    let svg = out.with_extension("svg");
    if svg == out {
        bail!(
            "--out {}: with --svg the picture goes to the same name with .svg, which would \
             overwrite the DOT file; name it FILE.dot",
            out.display()
        );
    }
    Ok(svg)
}

/// Graphviz's `dot` program, from PATH.
fn find_dot() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(format!("dot{}", std::env::consts::EXE_SUFFIX)))
        .find(|p| is_executable(p))
        .with_context(|| {
            "--svg needs Graphviz's `dot` program, which is not on PATH: install graphviz \
             (apt-get install graphviz, brew install graphviz), or leave out --svg and draw \
             the DOT file elsewhere"
        })
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Runs `dot -Tsvg DOT_FILE -o .SVG.tmp`, then renames the picture to `svg`. A `dot` still
/// running after `deadline` is killed (a huge graph can take Graphviz very long to lay out).
fn render_svg(dot: &Path, dot_file: &Path, svg: &Path, deadline: Duration) -> Result<()> {
    let name = svg.file_name().context("the SVG path has no file name")?;
    let tmp = svg.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut child = Command::new(dot)
        .arg("-Tsvg")
        .arg(dot_file)
        .arg("-o")
        .arg(&tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running Graphviz's {}", dot.display()))?;
    // Read on a thread, so that a `dot` with a lot to say cannot fill the pipe and stall.
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let messages = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for Graphviz's dot")? {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "Graphviz's dot did not draw {} within {} s and was stopped; the DOT file is \
                 written, or try a smaller model (--depth, --width)",
                dot_file.display(),
                deadline.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let messages = messages.join().unwrap_or_default();
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "Graphviz's `dot -Tsvg {}` failed ({status}): {}",
            dot_file.display(),
            messages.trim()
        );
    }
    std::fs::rename(&tmp, svg).with_context(|| format!("writing {}", svg.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for `dot`: a shell script with this body, in a fresh folder.
    fn fake_dot(dir: &Path, body: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let script = dir.join("dot");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    fn graph_svg_a_slow_dot_is_killed_and_a_failing_one_is_reported() {
        let dir = std::env::temp_dir().join(format!("senet-graph-svg-{}", std::process::id()));
        let (dot_file, svg) = (dir.join("g.dot"), dir.join("g.svg"));

        let slow = fake_dot(&dir.join("slow"), "exec sleep 30");
        let started = Instant::now();
        let err = render_svg(&slow, &dot_file, &svg, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            err.to_string().contains("within 0 s and was stopped"),
            "{err}"
        );

        let failing = fake_dot(
            &dir.join("failing"),
            "echo 'syntax error in line 1' >&2; exit 1",
        );
        let err = render_svg(&failing, &dot_file, &svg, DOT_DEADLINE).unwrap_err();
        assert!(err.to_string().contains("syntax error in line 1"), "{err}");

        // A good one writes a temporary file, renamed to the SVG.
        let good = fake_dot(&dir.join("good"), "printf '<svg/>' > \"$4\"");
        render_svg(&good, &dot_file, &svg, DOT_DEADLINE).unwrap();
        assert_eq!(std::fs::read_to_string(&svg).unwrap(), "<svg/>");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left.len(),
            4,
            "slow, failing, good and g.svg only: {left:?}"
        );

        assert!(svg_path(&svg).is_err());
        assert_eq!(svg_path(&dot_file).unwrap(), svg);
        assert_eq!(svg_path(&dir.join("g")).unwrap(), svg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
