//! Image folders (directories and tar.gz), their refusals, and the real CIFAR-10 JPEG archive.

use std::fs;
use std::path::Path;
use std::time::Instant;

use image::{Rgb, RgbImage};
use senet_data::{load_image_folder, Dataset, Error, ImageFolderOptions};

use crate::common::*;

/// A smooth test picture, different for each `k` (smooth so JPEG keeps it close).
fn picture(k: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (k * 20 + x * 3) as u8,
            (y * 5 + k) as u8,
            (100 + (x + y) * 2) as u8,
        ])
    })
}

fn save(root: &Path, rel: &str, img: &RgbImage) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(&path).unwrap();
}

/// (relative path, picture number) in the order the reader must produce, then the test split.
const TRAIN: [(&str, u32, u32); 6] = [
    ("ant/x.png", 0, 0),
    ("cat/B.png", 1, 1), // bytewise: "B" < "a" < "b"
    ("cat/a.jpg", 2, 1),
    ("cat/b.png", 3, 1),
    ("dog/1.jpeg", 4, 2),
    ("dog/sub/2.png", 5, 2),
];
const TEST: [(&str, u32, u32); 2] = [("ant/t.png", 6, 0), ("dog/t.JPG", 7, 2)];

/// Writes the small dataset above under `root`, in shuffled creation order.
fn write_folder(root: &Path) {
    for (rel, k, _) in TRAIN.iter().rev() {
        save(&root.join("train"), rel, &picture(*k, 32, 32));
    }
    for (rel, k, _) in TEST {
        save(&root.join("test"), rel, &picture(k, 32, 32));
    }
    // Ignored: non-image files and hidden files.
    fs::write(root.join("train/notes.txt"), "not an image").unwrap();
    fs::write(root.join("train/cat/readme.txt"), "not an image").unwrap();
    fs::write(root.join("train/cat/.hidden.png"), "junk").unwrap();
}

fn planar(img: &RgbImage) -> Vec<u8> {
    let mut out = vec![0u8; 3 * 32 * 32];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * 1024 + i] = px[c];
        }
    }
    out
}

fn check_small(ds: &Dataset) {
    assert_eq!(ds.classes, ["ant", "cat", "dog"]);
    assert_eq!((ds.train.len, ds.test.len, ds.image_size), (6, 2, 32));
    for (split, list) in [(&ds.train, &TRAIN[..]), (&ds.test, &TEST[..])] {
        for (i, (rel, k, label)) in list.iter().enumerate() {
            assert_eq!(split.labels[i], *label, "{rel}");
            let want = planar(&picture(*k, 32, 32));
            let got = split.image(i);
            if rel.ends_with(".png") {
                assert_eq!(got, want.as_slice(), "{rel}");
            } else {
                // JPEG is lossy: close on average.
                let diff: u32 = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| a.abs_diff(*b) as u32)
                    .sum();
                assert!(diff / 3072 < 6, "{rel}: mean abs diff {}", diff / 3072);
            }
        }
    }
    // Statistics from the training images alone.
    for c in 0..3 {
        let vals: Vec<f64> = (0..6)
            .flat_map(|i| ds.train.image(i)[c * 1024..(c + 1) * 1024].to_vec())
            .map(|v| v as f64 / 255.0)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!((ds.mean[c] as f64 - mean).abs() < 1e-5, "mean {c}");
        assert!((ds.std[c] as f64 - var.sqrt()).abs() < 1e-5, "std {c}");
    }
}

fn opts() -> ImageFolderOptions {
    ImageFolderOptions::default()
}

#[test]
fn reads_folders_and_archives_in_class_then_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("flat");
    write_folder(&root);
    let ds = load_image_folder(&root, &opts()).unwrap();
    check_small(&ds);

    // One top-level folder holding train/ and test/, as archives unpack.
    let nested = dir.path().join("nested");
    write_folder(&nested.join("my-set"));
    let from_nested = load_image_folder(&nested, &opts()).unwrap();
    assert_eq!(from_nested.train, ds.train);

    // The same trees as .tar.gz, read as streams: identical datasets.
    for (tree, name) in [(&root, "flat.tar.gz"), (&nested, "nested.tgz")] {
        let archive = dir.path().join(name);
        fs::write(&archive, targz_of(tree)).unwrap();
        let from_tar = load_image_folder(&archive, &opts()).unwrap();
        assert_eq!(from_tar.classes, ds.classes);
        assert_eq!(from_tar.train, ds.train, "{name}");
        assert_eq!(from_tar.test, ds.test, "{name}");
        assert_eq!((from_tar.mean, from_tar.std), (ds.mean, ds.std));
    }
    // An archive without folder entries works too.
    let bytes = fs::read(root.join("train/ant/x.png")).unwrap();
    let archive = dir.path().join("bare.tar.gz");
    fs::write(
        &archive,
        targz(&[("./train/ant/x.png", &bytes), ("./test/ant/y.png", &bytes)]),
    )
    .unwrap();
    let bare = load_image_folder(&archive, &opts()).unwrap();
    assert_eq!(
        (bare.train.len, bare.test.len, bare.classes.len()),
        (1, 1, 1)
    );
}

#[test]
fn resize_scales_other_sizes() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "train/a/1.png", &picture(0, 40, 24));
    save(dir.path(), "train/b/1.png", &picture(1, 32, 32));
    save(dir.path(), "test/a/1.jpg", &picture(2, 16, 16));
    let o = ImageFolderOptions {
        image_size: 16,
        resize: true,
    };
    let ds = load_image_folder(dir.path(), &o).unwrap();
    assert_eq!((ds.image_size, ds.train.image_size), (16, 16));
    assert_eq!(ds.train.images.len(), 2 * 3 * 16 * 16);
    assert_eq!(ds.test.images.len(), 3 * 16 * 16);
}

fn refusal(path: &Path) -> String {
    let err = load_image_folder(path, &opts()).unwrap_err();
    assert!(
        matches!(err, Error::BadData(_) | Error::Io { .. }),
        "{err:?}"
    );
    err.to_string()
}

#[test]
fn refuses_unreadable_and_wrong_size_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    write_folder(&root);
    fs::write(root.join("train/cat/broken.png"), b"\x89PNG not really").unwrap();
    let msg = refusal(&root);
    let bad = root.join("train/cat/broken.png");
    assert!(
        msg.contains(&format!("cannot decode image {}", bad.display())),
        "{msg}"
    );

    let archive = dir.path().join("set.tar.gz");
    fs::write(&archive, targz_of(&root)).unwrap();
    let msg = refusal(&archive);
    assert!(msg.contains("set.tar.gz:train/cat/broken.png"), "{msg}");

    fs::remove_file(&bad).unwrap();
    save(&root, "test/dog/wide.png", &picture(0, 40, 30));
    let msg = refusal(&root);
    assert!(
        msg.contains("test/dog/wide.png is 40x30, expected 32x32"),
        "{msg}"
    );
    assert!(msg.contains("resize"), "{msg}");
}

#[test]
fn refuses_missing_splits_and_empty_class_sets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    write_folder(&root);

    let only_test = dir.path().join("only-test");
    fs::create_dir_all(&only_test).unwrap();
    fs::rename(root.join("test"), only_test.join("test")).unwrap();
    let msg = refusal(&only_test);
    assert!(msg.contains("has no train/ folder"), "{msg}");
    let msg = refusal(&root);
    assert!(msg.contains("has no test/ folder"), "{msg}");
    let archive = dir.path().join("no-test.tar.gz");
    fs::write(&archive, targz_of(&root)).unwrap();
    let msg = refusal(&archive);
    assert!(msg.contains("no-test.tar.gz has no test/ folder"), "{msg}");

    // train/ with no class folders at all.
    let empty = dir.path().join("empty");
    fs::create_dir_all(empty.join("train")).unwrap();
    fs::create_dir_all(empty.join("test/cat")).unwrap();
    let msg = refusal(&empty);
    assert!(msg.contains("train holds no class folders"), "{msg}");

    // A class folder with no images.
    fs::create_dir_all(empty.join("train/cat")).unwrap();
    fs::write(empty.join("train/cat/readme.txt"), "x").unwrap();
    let msg = refusal(&empty);
    assert!(
        msg.contains("train/cat holds no PNG or JPEG images"),
        "{msg}"
    );

    // A test class that training lacks.
    let one = dir.path().join("one");
    save(&one, "train/cat/1.png", &picture(0, 32, 32));
    save(&one, "test/cow/1.png", &picture(0, 32, 32));
    let msg = refusal(&one);
    assert!(msg.contains("test/cow is a class that"), "{msg}");

    // Images must sit in class folders.
    save(&one, "train/stray.png", &picture(0, 32, 32));
    let msg = refusal(&one);
    assert!(
        msg.contains("train/stray.png is not inside a class folder"),
        "{msg}"
    );

    let text = dir.path().join("data.txt");
    fs::write(&text, "x").unwrap();
    let msg = refusal(&text);
    assert!(msg.contains("neither a folder nor a .tar.gz"), "{msg}");
    let msg = refusal(&dir.path().join("absent"));
    assert!(msg.contains("absent"), "{msg}");

    let corrupt = dir.path().join("corrupt.tar.gz");
    fs::write(&corrupt, b"not gzip at all").unwrap();
    let msg = refusal(&corrupt);
    assert!(msg.contains("corrupt.tar.gz"), "{msg}");
}

#[test]
fn reads_the_real_cifar10_jpeg_archive() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar10-jpeg.tar.gz");
    if !path.exists() {
        println!("skipped: {} is absent", path.display());
        return;
    }
    let start = Instant::now();
    let ds = load_image_folder(&path, &opts()).unwrap();
    println!(
        "read {} + {} images from {} in {:.1?}; mean {:?} std {:?}",
        ds.train.len,
        ds.test.len,
        path.display(),
        start.elapsed(),
        ds.mean,
        ds.std
    );
    assert_eq!((ds.train.len, ds.test.len), (50_000, 10_000));
    assert_eq!(ds.classes, CIFAR10_NAMES);
    for (split, per_class) in [(&ds.train, 5000), (&ds.test, 1000)] {
        let mut counts = [0usize; 10];
        for &l in &split.labels {
            counts[l as usize] += 1; // panics (fails) if a label is out of range
        }
        assert_eq!(counts, [per_class; 10]);
        assert!(split.labels.windows(2).all(|w| w[0] <= w[1]), "class order");
    }
    // The JPEG copy's statistics are those of CIFAR-10, give or take the re-encoding.
    for c in 0..3 {
        assert!(
            (ds.mean[c] - senet_data::CIFAR10_MEAN[c]).abs() < 0.01,
            "{:?}",
            ds.mean
        );
        assert!(
            (ds.std[c] - senet_data::CIFAR10_STD[c]).abs() < 0.01,
            "{:?}",
            ds.std
        );
    }
}

#[cfg(unix)]
#[test]
fn link_loops_and_duplicates_are_refused_and_a_users_links_still_work() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    write_folder(&root);

    // The user's own links: --data itself a link, and a class folder linking to images kept
    // elsewhere. Both read as if they were the real folders.
    let elsewhere = dir.path().join("elsewhere");
    save(&elsewhere, "e.png", &picture(9, 32, 32));
    symlink(&elsewhere, root.join("train/elk")).unwrap();
    let link = dir.path().join("link-to-set");
    symlink(&root, &link).unwrap();
    let ds = load_image_folder(&link, &opts()).unwrap();
    assert_eq!(ds.classes, ["ant", "cat", "dog", "elk"]);
    assert_eq!(ds.train.len, TRAIN.len() + 1);

    // Two links to the class folder itself: would never finish (l1/l2/l1/...), or count its
    // images again. Refused, quickly, naming the folder.
    symlink(".", root.join("train/cat/l1")).unwrap();
    symlink(".", root.join("train/cat/l2")).unwrap();
    let started = Instant::now();
    let err = refusal(&root);
    assert!(err.contains("already read") && err.contains("cat"), "{err}");
    assert!(started.elapsed().as_secs() < 10);
    fs::remove_file(root.join("train/cat/l1")).unwrap();
    fs::remove_file(root.join("train/cat/l2")).unwrap();

    // A FIFO named like an image would block the reader forever.
    let fifo = root.join("train/cat/pipe.png");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = refusal(&root);
    assert!(
        err.contains("pipe.png") && err.contains("not a regular file"),
        "{err}"
    );
    fs::remove_file(&fifo).unwrap();
    // So would a FIFO given as --data.
    let c = std::ffi::CString::new(
        dir.path()
            .join("data.tar.gz")
            .as_os_str()
            .as_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = refusal(&dir.path().join("data.tar.gz"));
    assert!(err.contains("regular file"), "{err}");
}

#[test]
fn hostile_archives_are_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = Vec::new();
    picture(1, 32, 32)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let test = ("test/ant/t.png", png.as_slice());

    // The same path twice: the image would count twice.
    let dup = dir.path().join("dup.tar.gz");
    let bytes = targz(&[("train/ant/a.png", &png), ("train/ant/a.png", &png), test]);
    fs::write(&dup, bytes).unwrap();
    let err = refusal(&dup);
    assert!(
        err.contains("train/ant/a.png") && err.contains("twice"),
        "{err}"
    );

    // A last header that claims a 1 TiB entry (and ends there): refused without trying to
    // allocate it.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(png.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, test.0, test.1).unwrap();
    let mut huge = tar::Header::new_gnu();
    huge.set_path("train/ant/huge.png").unwrap();
    huge.set_size(1 << 40);
    huge.set_mode(0o644);
    huge.set_cksum();
    // Written raw, so that the archive's end marker (added by `into_inner`) is its data.
    std::io::Write::write_all(tar.get_mut(), huge.as_bytes()).unwrap();
    std::io::Write::write_all(tar.get_mut(), &[7u8; 4096]).unwrap();
    let raw = tar.into_inner().unwrap();
    let lying = dir.path().join("lying.tar.gz");
    fs::write(&lying, raw.finish().unwrap()).unwrap();
    let err = refusal(&lying);
    assert!(err.contains("huge.png"), "{err}");

    // An image whose header claims 100000 x 100000 pixels.
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bomb.extend(100_000u32.to_be_bytes());
    bomb.extend(100_000u32.to_be_bytes());
    bomb.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let big = dir.path().join("big.tar.gz");
    fs::write(&big, targz(&[("train/ant/b.png", &bomb), test])).unwrap();
    let err = refusal(&big);
    assert!(err.contains("train/ant/b.png"), "{err}");
}

#[test]
fn tar_extension_headers_are_read_capped_and_long_names_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = Vec::new();
    picture(2, 32, 32)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    // A class name past the 100 bytes of a tar header's name: written as a GNU long name.
    let class = "c".repeat(150);
    let (train, test) = (
        format!("train/{class}/a.png"),
        format!("test/{class}/b.png"),
    );
    let long = dir.path().join("long.tar.gz");
    fs::write(&long, targz(&[(&train, &png), (&test, &png)])).unwrap();
    let ds = load_image_folder(&long, &opts()).unwrap();
    assert_eq!(ds.classes, [class]);

    // A GNU long-name header claiming 8 GiB of name: refused without reading it into memory.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(8 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    std::io::Write::write_all(tar.get_mut(), h.as_bytes()).unwrap();
    std::io::Write::write_all(tar.get_mut(), &vec![b'x'; 1 << 20]).unwrap();
    let bomb = dir.path().join("bomb.tar.gz");
    fs::write(&bomb, tar.into_inner().unwrap().finish().unwrap()).unwrap();
    let err = refusal(&bomb);
    assert!(err.contains("extension header"), "{err}");
}
