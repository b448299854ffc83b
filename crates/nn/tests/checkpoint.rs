//! Checkpoints: a save/load round trip is bit-exact, and every kind of bad file is refused
//! with a message naming the tensor or byte offset, leaving the model untouched.
use rand::SeedableRng;
use senet_nn::checkpoint::{self, Metadata};
use senet_nn::layers::{BatchNorm2d, Conv2d, Linear, Pool, Sequential};
use senet_nn::{init, Module};
use senet_tensor::{Conv2dOptions, Tensor};
use std::path::PathBuf;

fn model(seed: u64) -> Sequential {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Sequential::new()
        .push(Conv2d::new(
            init::kaiming_normal_fan_out(&[4, 3, 3, 3], &mut rng),
            Some(init::uniform(&[4], 0.1, &mut rng)),
            Conv2dOptions::new(1, 1),
        ))
        .push(BatchNorm2d::new(4, 1e-5, 0.1))
        .push(Pool::GlobalAvg)
        .push(Linear::new(
            init::torch_default(&[5, 4], 4, &mut rng),
            Some(init::torch_default(&[5], 4, &mut rng)),
        ))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("senet-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("model.safetensors")
}

fn logits(m: &mut Sequential) -> Vec<u32> {
    let x = Tensor::randn(&[2, 3, 6, 6], &mut rand::rngs::StdRng::seed_from_u64(9));
    m.forward(&x, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn values(m: &mut Sequential) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    m.visit("", &mut |n, s| {
        let v = match s {
            senet_nn::Slot::Param(t) | senet_nn::Slot::Buffer(t) => t
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect(),
            senet_nn::Slot::Counter(c) => vec![*c as u32],
        };
        out.push((n.to_string(), v));
    });
    out
}

#[test]
fn round_trip_reproduces_logits_bit_for_bit() {
    let mut a = model(1);
    // A training step moves the running statistics and the counter away from their defaults.
    a.forward(
        &Tensor::randn(&[4, 3, 6, 6], &mut rand::rngs::StdRng::seed_from_u64(2)),
        true,
    )
    .unwrap();
    let path = tmp("roundtrip");
    let meta: Metadata = [("family".to_string(), "test".to_string())].into();
    checkpoint::save(&mut a, &meta, &path).unwrap();
    let mut b = model(2);
    assert_ne!(logits(&mut a), logits(&mut b));
    let read = checkpoint::load(&mut b, &path).unwrap();
    assert_eq!(read.get("family").map(String::as_str), Some("test"));
    assert_eq!(logits(&mut a), logits(&mut b));
    assert_eq!(values(&mut a), values(&mut b));
    assert_eq!(checkpoint::read_metadata(&path).unwrap(), meta);
    // The names are PyTorch's state_dict names for an nn.Sequential.
    let names: Vec<String> = values(&mut a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "3.weight",
            "3.bias"
        ]
    );
}

/// Builds a safetensors file from (name, dtype, shape, bytes).
fn file(entries: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = entries
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn refusals_name_the_problem_and_leave_the_model_untouched() {
    let mut good = model(1);
    let bytes = checkpoint::to_bytes(&mut good, &Metadata::new()).unwrap();
    let path = tmp("refusals");
    let mut target = model(3);
    let before = values(&mut target);
    let mut refuse = |bytes: &[u8], want: &[&str]| {
        std::fs::write(&path, bytes).unwrap();
        let e = checkpoint::load(&mut target, &path)
            .unwrap_err()
            .to_string();
        for w in want {
            assert!(e.contains(w), "{e:?} should mention {w:?}");
        }
        assert!(e.contains("model.safetensors"), "{e}");
        assert_eq!(
            values(&mut target),
            before,
            "a refused load must not change the model"
        );
    };
    // Truncated body: the message gives the offset the tensors need and where the file ends.
    refuse(
        &bytes[..bytes.len() - 10],
        &[
            "truncated",
            &format!("ends at byte {}", bytes.len() - 10),
            &format!("offset {}", bytes.len()),
        ],
    );
    // Truncated header, and garbage.
    refuse(&bytes[..20], &["header length"]);
    refuse(&bytes[..5], &["8-byte header"]);
    let mut corrupt = bytes.clone();
    corrupt[10] = b'\xff';
    refuse(&corrupt, &["header"]);

    // A file from another model: missing, unexpected, wrong shape, wrong dtype.
    let f32s = |n: usize| vec![0u8; 4 * n];
    let mut entries: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)> = vec![
        (
            "0.weight",
            safetensors::Dtype::F32,
            vec![4, 3, 3, 3],
            f32s(108),
        ),
        ("0.bias", safetensors::Dtype::F32, vec![4], f32s(4)),
        ("1.weight", safetensors::Dtype::F32, vec![4], f32s(4)),
        ("1.bias", safetensors::Dtype::F32, vec![4], f32s(4)),
        ("1.running_mean", safetensors::Dtype::F32, vec![4], f32s(4)),
        ("1.running_var", safetensors::Dtype::F32, vec![4], f32s(4)),
        (
            "1.num_batches_tracked",
            safetensors::Dtype::I64,
            vec![],
            vec![0; 8],
        ),
        ("3.weight", safetensors::Dtype::F32, vec![5, 4], f32s(20)),
        ("3.bias", safetensors::Dtype::F32, vec![5], f32s(5)),
    ];
    std::fs::write(&path, file(&entries)).unwrap();
    checkpoint::load(&mut model(4), &path).expect("the complete file loads");
    let last = entries.pop().unwrap();
    refuse(&file(&entries), &["missing 1 tensor", "3.bias"]);
    entries.push(last);
    entries.push(("4.weight", safetensors::Dtype::F32, vec![1], f32s(1)));
    refuse(&file(&entries), &["unexpected", "4.weight"]);
    entries.pop();
    entries[7] = ("3.weight", safetensors::Dtype::F32, vec![4, 5], f32s(20));
    refuse(&file(&entries), &["3.weight", "[4, 5]", "[5, 4]"]);
    entries[7] = (
        "3.weight",
        safetensors::Dtype::F64,
        vec![5, 4],
        vec![0u8; 160],
    );
    refuse(&file(&entries), &["3.weight", "F64", "F32"]);
    entries[7] = ("3.weight", safetensors::Dtype::F32, vec![5, 4], f32s(20));
    entries[6] = (
        "1.num_batches_tracked",
        safetensors::Dtype::F32,
        vec![],
        f32s(1),
    );
    refuse(&file(&entries), &["num_batches_tracked", "I64"]);
}

#[test]
fn saving_replaces_the_file_atomically() {
    let path = tmp("atomic");
    let mut m = model(1);
    checkpoint::save(&mut m, &Metadata::new(), &path).unwrap();
    checkpoint::save(&mut m, &Metadata::new(), &path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file is left behind: {leftovers:?}"
    );
    let e = checkpoint::load(&mut m, &path.with_file_name("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
}
