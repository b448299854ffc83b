//! Readers of the official CIFAR-10 / CIFAR-100 binary files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::download::{fetch, Archive, DownloadOptions};
use crate::download::{CIFAR100_MD5, CIFAR100_URL, CIFAR10_MD5, CIFAR10_URL};
use crate::error::{Error, Result};
use crate::{Dataset, Split};

/// CIFAR-10 training-set mean of `pixel / 255` (RGB).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR-10 training-set standard deviation of `pixel / 255` (RGB).
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// CIFAR-100 training-set mean of `pixel / 255` (RGB).
pub const CIFAR100_MEAN: [f32; 3] = [0.5071, 0.4865, 0.4409];
/// CIFAR-100 training-set standard deviation of `pixel / 255` (RGB).
pub const CIFAR100_STD: [f32; 3] = [0.2673, 0.2564, 0.2762];

const SIZE: usize = 32;
const PIXELS: usize = 3 * SIZE * SIZE;

/// Which CIFAR-100 label to train on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Labels {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 superclasses.
    Coarse,
}

const CIFAR10_TRAIN: &[&str] = &[
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const CIFAR10: Archive = Archive {
    name: "CIFAR-10",
    url: CIFAR10_URL,
    md5: CIFAR10_MD5,
    folder: "cifar-10-batches-bin",
    files: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
        "batches.meta.txt",
    ],
};
const CIFAR100: Archive = Archive {
    name: "CIFAR-100",
    url: CIFAR100_URL,
    md5: CIFAR100_MD5,
    folder: "cifar-100-binary",
    files: &[
        "train.bin",
        "test.bin",
        "fine_label_names.txt",
        "coarse_label_names.txt",
    ],
};

/// Loads CIFAR-10 from `dir/cifar-10-batches-bin/` (or from `dir` itself when it is that
/// folder), downloading the official archive into `dir` first when neither holds the files.
///
/// Records keep their file order: `data_batch_1.bin` to `data_batch_5.bin`, then `test_batch.bin`.
pub fn load_cifar10(dir: &Path, download: &DownloadOptions) -> Result<Dataset> {
    let folder = locate(dir, &CIFAR10, download)?;
    let classes = read_names(&folder.join("batches.meta.txt"), 10)?;
    let limits = [Limit {
        what: "label",
        classes: 10,
    }];
    let paths: Vec<PathBuf> = CIFAR10_TRAIN.iter().map(|f| folder.join(f)).collect();
    let train = read_split(&paths, &limits, 0)?;
    let test = read_split(&[folder.join("test_batch.bin")], &limits, 0)?;
    Ok(Dataset {
        train: Arc::new(train),
        test: Arc::new(test),
        classes,
        mean: CIFAR10_MEAN,
        std: CIFAR10_STD,
        image_size: SIZE,
    })
}

/// Loads CIFAR-100 from `dir/cifar-100-binary/` (or from `dir` itself when it is that folder),
/// downloading the official archive into `dir` first when neither holds the files. `labels`
/// picks the fine (100) or coarse (20) classes; both label bytes are range-checked either way.
pub fn load_cifar100(dir: &Path, labels: Labels, download: &DownloadOptions) -> Result<Dataset> {
    let folder = locate(dir, &CIFAR100, download)?;
    let (names, pick) = match labels {
        Labels::Fine => (read_names(&folder.join("fine_label_names.txt"), 100)?, 1),
        Labels::Coarse => (read_names(&folder.join("coarse_label_names.txt"), 20)?, 0),
    };
    let limits = [
        Limit {
            what: "coarse label",
            classes: 20,
        },
        Limit {
            what: "fine label",
            classes: 100,
        },
    ];
    let train = read_split(&[folder.join("train.bin")], &limits, pick)?;
    let test = read_split(&[folder.join("test.bin")], &limits, pick)?;
    Ok(Dataset {
        train: Arc::new(train),
        test: Arc::new(test),
        classes: names,
        mean: CIFAR100_MEAN,
        std: CIFAR100_STD,
        image_size: SIZE,
    })
}

/// Finds the folder holding the binary files, downloading it if absent.
fn locate(dir: &Path, archive: &Archive, download: &DownloadOptions) -> Result<PathBuf> {
    let nested = dir.join(archive.folder);
    let folder = if nested.is_dir() {
        nested
    } else if dir.join(archive.files[0]).is_file() {
        // `--data` pointed at the binary folder itself.
        dir.to_path_buf()
    } else {
        fetch(dir, archive, download)?;
        nested
    };
    // Extraction is all-or-nothing, so a partial folder was made by hand: say what is missing
    // rather than download over it.
    let missing: Vec<&str> = archive
        .files
        .iter()
        .copied()
        .filter(|f| !folder.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(Error::BadData(format!(
            "{} is incomplete: missing {}; {} (or delete the folder to download it again)",
            folder.display(),
            missing.join(", "),
            archive.where_to_put(dir)
        )));
    }
    Ok(folder)
}

/// Reads a class-name file: one name per line, blank lines ignored, exactly `expected` names.
fn read_names(path: &Path, expected: usize) -> Result<Vec<String>> {
    let bytes = crate::files::read_regular(path, 1 << 20, "a class-name file")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::BadData(format!("{} is not UTF-8 text", path.display())))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != expected {
        return Err(Error::BadData(format!(
            "{} lists {} class names, expected {expected}",
            path.display(),
            names.len()
        )));
    }
    Ok(names)
}

/// One label byte at the start of each record and its number of classes.
struct Limit {
    what: &'static str,
    classes: u32,
}

/// Reads the records of `paths` in order; each record is one byte per `limits` entry followed
/// by 3072 pixel bytes; the label kept is byte `pick`.
fn read_split(paths: &[PathBuf], limits: &[Limit], pick: usize) -> Result<Split> {
    let record = limits.len() + PIXELS;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        // The official files hold 10,000 records each (30 MB); a few more are allowed.
        let bytes = crate::files::read_regular(path, 512 << 20, "a CIFAR batch file")?;
        if bytes.is_empty() {
            return Err(Error::BadData(format!(
                "{} is empty (expected {record}-byte records)",
                path.display()
            )));
        }
        if bytes.len() % record != 0 {
            let whole = bytes.len() / record;
            return Err(Error::BadData(format!(
                "{}: size {} is not a multiple of the {record}-byte record: record {whole} \
                 (offset {}) is truncated to {} bytes",
                path.display(),
                bytes.len(),
                whole * record,
                bytes.len() % record
            )));
        }
        images.reserve(bytes.len() / record * PIXELS);
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            for (limit, &value) in limits.iter().zip(rec) {
                if u32::from(value) >= limit.classes {
                    return Err(Error::BadData(format!(
                        "{}: record {i} (offset {}): {} {value} is out of range (0..{})",
                        path.display(),
                        i * record,
                        limit.what,
                        limit.classes
                    )));
                }
            }
            labels.push(u32::from(rec[pick]));
            images.extend_from_slice(&rec[limits.len()..]);
        }
    }
    Ok(Split {
        len: labels.len(),
        images,
        labels,
        image_size: SIZE,
    })
}
