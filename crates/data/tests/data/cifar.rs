//! The CIFAR-10 / CIFAR-100 binary readers and their refusals.

use std::fs;

use senet_data::{load_cifar10, load_cifar100, DownloadOptions, Error, Labels};

use crate::common::*;

fn offline() -> DownloadOptions {
    DownloadOptions {
        offline: true,
        ..Default::default()
    }
}

#[test]
fn cifar10_reads_records_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 3, 4);
    let ds = load_cifar10(dir.path(), &offline()).unwrap();
    assert_eq!(ds.classes, CIFAR10_NAMES);
    assert_eq!((ds.train.len, ds.test.len, ds.image_size), (15, 4, 32));
    assert_eq!(ds.mean, senet_data::CIFAR10_MEAN);
    assert_eq!(ds.std, senet_data::CIFAR10_STD);
    for g in 0..15 {
        assert_eq!(ds.train.image(g), pixels(g).as_slice(), "train image {g}");
        assert_eq!(ds.train.labels[g], u32::from(label10(g)));
    }
    for i in 0..4 {
        assert_eq!(ds.test.image(i), pixels(15 + i).as_slice());
        assert_eq!(ds.test.labels[i], u32::from(label10(15 + i)));
    }
    // `--data` may also point at the binary folder itself.
    let inner = load_cifar10(&dir.path().join("cifar-10-batches-bin"), &offline()).unwrap();
    assert_eq!(inner.train, ds.train);
}

#[test]
fn cifar100_reads_fine_or_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar100(dir.path(), 7, 3);
    let fine = load_cifar100(dir.path(), Labels::Fine, &offline()).unwrap();
    let coarse = load_cifar100(dir.path(), Labels::default(), &offline()).unwrap();
    assert_eq!(fine.train, coarse.train, "fine is the default");
    let coarse = load_cifar100(dir.path(), Labels::Coarse, &offline()).unwrap();
    assert_eq!((fine.classes.len(), coarse.classes.len()), (100, 20));
    assert_eq!(fine.classes[3], "fine03");
    assert_eq!(coarse.classes[19], "coarse19");
    assert_eq!((fine.train.len, fine.test.len), (7, 3));
    assert_eq!(fine.mean, senet_data::CIFAR100_MEAN);
    assert_eq!(fine.std, senet_data::CIFAR100_STD);
    for g in 0..7 {
        let (c, f) = labels100(g);
        assert_eq!(fine.train.labels[g], u32::from(f));
        assert_eq!(coarse.train.labels[g], u32::from(c));
        assert_eq!(fine.train.image(g), pixels(g).as_slice());
    }
    assert_eq!(fine.test.image(2), pixels(9).as_slice());
}

fn err_text(e: Error) -> String {
    e.to_string()
}

#[test]
fn refuses_truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 3, 2);
    let path = dir.path().join("cifar-10-batches-bin/data_batch_2.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(2 * 3073 + 100);
    fs::write(&path, bytes).unwrap();
    let msg = err_text(load_cifar10(dir.path(), &offline()).unwrap_err());
    assert!(msg.contains("data_batch_2.bin"), "{msg}");
    assert!(
        msg.contains("not a multiple of the 3073-byte record"),
        "{msg}"
    );
    assert!(msg.contains("record 2 (offset 6146)"), "{msg}");

    fs::write(&path, b"").unwrap();
    let msg = err_text(load_cifar10(dir.path(), &offline()).unwrap_err());
    assert!(msg.contains("data_batch_2.bin is empty"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    write_cifar100(dir.path(), 2, 2);
    let path = dir.path().join("cifar-100-binary/test.bin");
    fs::write(&path, vec![0u8; 3074 + 3073]).unwrap();
    let msg = err_text(load_cifar100(dir.path(), Labels::Fine, &offline()).unwrap_err());
    assert!(msg.contains("test.bin"), "{msg}");
    assert!(msg.contains("3074-byte record"), "{msg}");
}

#[test]
fn refuses_labels_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 3, 2);
    let path = dir.path().join("cifar-10-batches-bin/test_batch.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[3073] = 10;
    fs::write(&path, bytes).unwrap();
    let msg = err_text(load_cifar10(dir.path(), &offline()).unwrap_err());
    assert!(msg.contains("test_batch.bin"), "{msg}");
    assert!(msg.contains("record 1 (offset 3073): label 10"), "{msg}");

    for (byte, value, what) in [(0, 20, "coarse label 20"), (1, 100, "fine label 100")] {
        let dir = tempfile::tempdir().unwrap();
        write_cifar100(dir.path(), 3, 2);
        let path = dir.path().join("cifar-100-binary/train.bin");
        let mut bytes = fs::read(&path).unwrap();
        bytes[2 * 3074 + byte] = value;
        fs::write(&path, bytes).unwrap();
        // Both label bytes are checked whichever one is used.
        for labels in [Labels::Fine, Labels::Coarse] {
            let msg = err_text(load_cifar100(dir.path(), labels, &offline()).unwrap_err());
            assert!(msg.contains("train.bin"), "{msg}");
            assert!(
                msg.contains(&format!("record 2 (offset 6148): {what}")),
                "{msg}"
            );
        }
    }
}

#[test]
fn refuses_bad_names_and_incomplete_folders() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 1, 1);
    let folder = dir.path().join("cifar-10-batches-bin");
    fs::write(folder.join("batches.meta.txt"), "cat\ndog\n").unwrap();
    let msg = err_text(load_cifar10(dir.path(), &offline()).unwrap_err());
    assert!(
        msg.contains("batches.meta.txt lists 2 class names, expected 10"),
        "{msg}"
    );

    fs::remove_file(folder.join("data_batch_4.bin")).unwrap();
    let msg = err_text(load_cifar10(dir.path(), &offline()).unwrap_err());
    assert!(msg.contains("missing data_batch_4.bin"), "{msg}");
    assert!(msg.contains(&folder.display().to_string()), "{msg}");
}

#[test]
fn offline_and_missing_says_where_to_put_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_cifar100(dir.path(), Labels::Fine, &offline()).unwrap_err();
    assert!(matches!(err, Error::Download(_)), "{err:?}");
    let msg = err.to_string();
    let folder = dir.path().join("cifar-100-binary");
    assert!(msg.contains(&folder.display().to_string()), "{msg}");
    assert!(
        msg.contains("train.bin, test.bin, fine_label_names.txt"),
        "{msg}"
    );
    assert!(msg.contains(senet_data::CIFAR100_URL), "{msg}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}
