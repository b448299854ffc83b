//! Shared by the training tests: a small learnable CIFAR-10-format dataset written to a temp
//! folder, and the options of a quick run on it.
#![allow(dead_code)]
use senet::models::{Family, ModelConfig, Preset};
use senet::train::{DataOptions, DatasetSpec, TrainOptions};
use std::path::{Path, PathBuf};

/// A fresh temporary folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("senet-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `cifar-10-batches-bin/` under `dir`: `per_class` training images per class (split over
/// the five batch files) and `per_class / 2` test images. Class c is a vertical gradient whose
/// colour depends on c, plus noise, so a small network learns it within a few epochs.
pub fn write_cifar10(dir: &Path, per_class: usize, seed: u64) {
    let bin = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % 61) as i32 - 30
    };
    let mut record = |label: u8| {
        let mut r = vec![label];
        for ch in 0..3usize {
            for y in 0..32usize {
                for _x in 0..32 {
                    let base = ((label as usize * (ch + 3) * 37) % 200) as i32
                        + if (label as usize + ch).is_multiple_of(2) {
                            y as i32 * 2
                        } else {
                            64 - y as i32 * 2
                        };
                    r.push((base + noise()).clamp(0, 255) as u8);
                }
            }
        }
        r
    };
    let mut train: Vec<Vec<u8>> = (0..per_class * 10)
        .map(|i| record((i % 10) as u8))
        .collect();
    let test: Vec<u8> = (0..(per_class / 2).max(1) * 10)
        .flat_map(|i| record((i % 10) as u8))
        .collect();
    let per_file = train.len().div_ceil(5);
    for k in 0..5 {
        let chunk: Vec<u8> = train.drain(..per_file.min(train.len())).flatten().collect();
        std::fs::write(bin.join(format!("data_batch_{}.bin", k + 1)), chunk).unwrap();
    }
    std::fs::write(bin.join("test_batch.bin"), test).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(bin.join("batches.meta.txt"), names).unwrap();
}

/// A quick run: resnet-18 of width 4 with the CIFAR preset on the generated data.
pub fn options(data: &Path, out: &Path, device: &str) -> TrainOptions {
    let mut model = ModelConfig::new(Family::ResNet, Some(18), Preset::Cifar, 10);
    model.width = 4;
    TrainOptions {
        epochs: 3,
        batch: 16,
        lr: 0.05,
        warmup: 0.5,
        seed: 3,
        device: device.to_string(),
        ..TrainOptions::new(model, DataOptions::new(DatasetSpec::Cifar10, data), out)
    }
}

/// Every tensor of a checkpoint as raw bits, by name.
pub fn checkpoint_bits(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// Writes `cifar-100-binary/` under `dir` in the official layout (a coarse and a fine label byte
/// before each image): `train` and `test` images whose coarse label is `i % 20` and fine label
/// `(i * 7) % 100`, with pixels that depend on both, and the two label-name files.
pub fn write_cifar100(dir: &Path, train: usize, test: usize) {
    let bin = dir.join("cifar-100-binary");
    std::fs::create_dir_all(&bin).unwrap();
    let split = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let (coarse, fine) = ((i % 20) as u8, ((i * 7) % 100) as u8);
                let pixels = (0..3072)
                    .map(move |j| ((j * (coarse as usize + 1) + fine as usize) % 256) as u8);
                [coarse, fine].into_iter().chain(pixels)
            })
            .collect()
    };
    std::fs::write(bin.join("train.bin"), split(train)).unwrap();
    std::fs::write(bin.join("test.bin"), split(test)).unwrap();
    let names = |prefix: &str, n: usize| -> String {
        (0..n).map(|i| format!("{prefix}{i:02}\n")).collect()
    };
    std::fs::write(bin.join("coarse_label_names.txt"), names("coarse", 20)).unwrap();
    std::fs::write(bin.join("fine_label_names.txt"), names("fine", 100)).unwrap();
}
