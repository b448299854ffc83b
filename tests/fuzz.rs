//! Fuzzing every parser of untrusted input: CIFAR binaries, image files, tar/gzip streams,
//! safetensors checkpoints (header and data) and optimizer state, a run folder's `config.json`,
//! `metrics.csv` and `steps.csv` on resume, a `--config` TOML file, and TensorBoard event files.
//! Each gets truncated, bit-flipped and random
//! inputs (proptest, seeded from valid files); each input must end in `Ok` or an error: no
//! panic, no hang (a deadline per input), and no single allocation over the parser's cap,
//! which a counting global allocator in this test binary checks.
//!
//! `SENET_FUZZ_CASES=N` sets the inputs per parser (default 256, what CI runs); the counts run
//! are printed (`cargo test --test fuzz -- --nocapture`).
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use senet::nn::Module;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Passes every allocation to the system allocator and remembers the largest one.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A valid file, truncated, with up to 8 bits flipped, or replaced by random bytes.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    let flips = prop::collection::vec((0..len.max(1), 0u8..8), 0..8);
    prop_oneof![
        (0..=len, flips.clone()).prop_map({
            let seed = seed.clone();
            move |(keep, flips)| {
                let mut v = seed.clone();
                for (at, bit) in flips {
                    if at < v.len() {
                        v[at] ^= 1 << bit;
                    }
                }
                v.truncate(keep.max(len / 2 * usize::from(keep % 3 != 0)));
                v
            }
        }),
        flips.prop_map({
            let seed = seed.clone();
            move |flips| {
                let mut v = seed.clone();
                for (at, bit) in flips {
                    if at < v.len() {
                        v[at] ^= 1 << bit;
                    }
                }
                v
            }
        }),
        (0..=len).prop_map(move |keep| seed[..keep].to_vec()),
        prop::collection::vec(any::<u8>(), 0..2048),
    ]
}

fn cases() -> u32 {
    std::env::var("SENET_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Runs `parse` on `cases()` inputs from `strategy`; each must return (Ok or Err: the result
/// is ignored) within the deadline, with no allocation over `cap` bytes.
fn fuzz(
    name: &str,
    cap: usize,
    strategy: impl Strategy<Value = Vec<u8>>,
    parse: impl Fn(&[u8]),
) -> u32 {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let ran = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |input| {
            LARGEST.store(0, Ordering::Relaxed);
            let started = Instant::now();
            parse(&input);
            ran.set(ran.get() + 1);
            let largest = LARGEST.load(Ordering::Relaxed);
            if largest > cap {
                return Err(TestCaseError::fail(format!(
                    "{name}: an allocation of {largest} bytes, over the cap of {cap}"
                )));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(TestCaseError::fail(format!(
                    "{name}: took {:?}",
                    started.elapsed()
                )));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("fuzz: {name}: {} inputs, each Ok or an error", ran.get());
    ran.get()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 50]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 50]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    bytes
}

/// A tar.gz image folder: two classes, one train and one test image each.
fn image_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in [
        ("set/train/a/1.png", png(8, 8)),
        ("set/train/b/1.jpg", jpeg(8, 8)),
        ("set/test/a/2.png", png(8, 8)),
        ("set/test/b/2.png", png(8, 8)),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A CIFAR-10 folder with valid small batch files; returns one batch file's bytes.
fn cifar_folder(dir: &Path) -> Vec<u8> {
    let bin = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let batch: Vec<u8> = (0..4u8)
        .flat_map(|l| std::iter::once(l).chain((0..3072).map(move |i| (i as u8) ^ l)))
        .collect();
    for k in 1..=5 {
        std::fs::write(bin.join(format!("data_batch_{k}.bin")), &batch).unwrap();
    }
    std::fs::write(bin.join("test_batch.bin"), &batch).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(bin.join("batches.meta.txt"), names).unwrap();
    batch
}

fn tiny_model() -> senet::models::Model {
    let mut c = senet::models::ModelConfig::new(
        "senetv2".parse().unwrap(),
        Some(9),
        "cifar".parse().unwrap(),
        10,
    );
    c.width = 2;
    senet::models::build(&c, 0).unwrap()
}

/// Every parser in one test, one after another: the allocation count is process-wide, so no
/// other test may run beside it.
#[test]
fn every_parser_ends_in_ok_or_an_error_within_its_caps() {
    use senet::nn::checkpoint;
    let dir = std::env::temp_dir().join(format!("senet-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut total = 0;

    // CIFAR binaries: one batch file of the folder replaced by each input.
    let cifar = dir.join("cifar");
    let batch = cifar_folder(&cifar);
    let offline = senet::data::DownloadOptions {
        offline: true,
        ..Default::default()
    };
    let target = cifar.join("cifar-10-batches-bin/data_batch_3.bin");
    total += fuzz("CIFAR-10 batch file", 16 << 20, mutated(batch), |input| {
        std::fs::write(&target, input).unwrap();
        let _ = senet::data::load_cifar10(&cifar, &offline);
    });

    // Image files: PNG and JPEG seeds (decoding is capped at 512 MiB by design).
    let image_cap = (senet::data::files::MAX_DECODE_ALLOC as usize) + (1 << 20);
    for (name, seed) in [("PNG image", png(16, 12)), ("JPEG image", jpeg(16, 12))] {
        total += fuzz(name, image_cap, mutated(seed), |input| {
            let _ = senet::data::files::decode_image(input, "fuzz");
        });
    }

    // tar/gzip streams: an image-folder archive.
    let archive = dir.join("set.tar.gz");
    let opts = senet::data::ImageFolderOptions {
        image_size: 8,
        resize: false,
    };
    total += fuzz(
        "tar.gz image folder",
        image_cap,
        mutated(image_archive()),
        |input| {
            std::fs::write(&archive, input).unwrap();
            let _ = senet::data::load_image_folder(&archive, &opts);
        },
    );

    // safetensors checkpoints, header and data, loaded into the model they describe.
    let model = std::cell::RefCell::new(tiny_model());
    let mut meta = checkpoint::Metadata::new();
    meta.insert("family".into(), "senetv2".into());
    let weights = checkpoint::to_bytes(&mut *model.borrow_mut(), &meta).unwrap();
    let limit = 16 << 20;
    total += fuzz("safetensors checkpoint", limit, mutated(weights), |input| {
        let _ = checkpoint::load_bytes(
            &mut *model.borrow_mut(),
            input,
            Path::new("fuzz.safetensors"),
        );
    });

    // Optimizer state as resume reads it (a file of named f32 tensors).
    let state: Vec<(String, senet::Tensor)> = model
        .borrow_mut()
        .parameters()
        .into_iter()
        .take(6)
        .map(|(n, t)| (format!("{n}.velocity"), t))
        .collect();
    let mut state_meta = checkpoint::Metadata::new();
    state_meta.insert("steps".into(), "3".into());
    state_meta.insert("run_step".into(), "3".into());
    let optim_file = dir.join("last.optim.safetensors");
    let seed = checkpoint::tensors_to_bytes(&state, &state_meta).unwrap();
    total += fuzz("optimizer state", limit, mutated(seed), |input| {
        std::fs::write(&optim_file, input).unwrap();
        if let Ok((tensors, meta)) =
            checkpoint::load_tensors(&optim_file, senet::tensor::Device::Cpu)
        {
            let mut opt = senet::nn::optim::Optimizer::sgd(0.9, true, 5e-4);
            let steps = meta.get("steps").and_then(|s| s.parse().ok()).unwrap_or(0);
            if opt.load_state(tensors, steps).is_ok() {
                let _ = opt.check_state(&mut *model.borrow_mut());
            }
        }
    });

    total += fuzz_run_files(&dir);
    eprintln!("fuzz: {total} inputs in all");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The files a run folder holds and resume reads (`config.json`, `metrics.csv`, `steps.csv`,
/// TensorBoard events) and a `--config` TOML file. Returns the inputs run.
fn fuzz_run_files(dir: &std::path::Path) -> u32 {
    let mut total = 0;
    // config.json, metrics.csv and steps.csv of a run folder on resume, and a --config file.
    let run = dir.join("run");
    let run_dir = senet::train::run_dir::RunDir::create(&run).unwrap();
    let current = serde_json::json!({
        "model": "resnet", "dataset": "cifar10", "lr": 0.1, "mean": [0.5, 0.25, 0.125],
        "set": ["stem=cifar"], "version": "0.1.0", "resolved": {"model": {"width": "2"}}
    });
    let config_seed = serde_json::to_vec_pretty(&current).unwrap();
    total += fuzz("config.json", 1 << 20, mutated(config_seed), |input| {
        std::fs::write(run.join("config.json"), input).unwrap();
        let _ = run_dir.check_resume_config(&current);
    });
    let toml_seed = b"model = \"resnet\"\nlr = 0.1\nset = [\"stem=cifar\"]\n[resolved]\nx = 1\n";
    let toml_file = dir.join("recipe.toml");
    total += fuzz(
        "--config TOML",
        1 << 20,
        mutated(toml_seed.to_vec()),
        |input| {
            std::fs::write(&toml_file, input).unwrap();
            let _ = senet::train::config_file::read(&toml_file);
        },
    );
    let row = "1,5,2.3,10.0,2.2,12.5,50.0,0.1,100.0,1.0\n";
    let csv = format!("{}\n{row}{row}", senet::train::metrics::CSV_HEADER).into_bytes();
    total += fuzz("metrics.csv", 1 << 20, mutated(csv), |input| {
        std::fs::write(run.join("metrics.csv"), input).unwrap();
        let _ = run_dir.read_metrics(3);
    });
    let row = "50,0.5,2.3,10.0,0.1,1796000000.0\n";
    let csv = format!("{}\n{row}{row}", senet::train::metrics::STEPS_CSV_HEADER).into_bytes();
    total += fuzz("steps.csv", 1 << 20, mutated(csv), |input| {
        std::fs::write(run.join("steps.csv"), input).unwrap();
        let _ = run_dir.restore_steps(100);
    });

    // A TensorBoard event file.
    let events_dir = dir.join("events");
    let seed = {
        let mut w = senet::train::tensorboard::EventWriter::create(&events_dir).unwrap();
        w.scalar("train/loss", 50, 2.5).unwrap();
        w.session_start(51).unwrap();
        w.scalar("epoch/test_top1", 100, 40.0).unwrap();
        w.flush().unwrap();
        std::fs::read(w.path()).unwrap()
    };
    let events_file = events_dir.join("fuzzed.tfevents");
    total += fuzz("TensorBoard events", 1 << 20, mutated(seed), |input| {
        std::fs::write(&events_file, input).unwrap();
        let _ = senet::train::tensorboard::read_scalars(&events_file);
    });

    total
}
