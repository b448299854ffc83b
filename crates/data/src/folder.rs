//! Image-folder datasets: `train/<class>/<image>` and `test/<class>/<image>` (PNG or JPEG), in a
//! folder or a `.tar.gz`, optionally under one top-level folder (`cifar10-jpeg/train/...`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{io_err, Error, Result};
use crate::files::{
    decode_image, read_capped, read_regular, MAX_ARCHIVE_IMAGE_BYTES, MAX_DATASET_BYTES,
    MAX_ENTRIES, MAX_IMAGE_FILE_BYTES,
};
use crate::{Dataset, Split};
use std::collections::HashSet;

/// How to read an image folder.
#[derive(Clone, Debug)]
pub struct ImageFolderOptions {
    /// Height and width of every image (default 32).
    pub image_size: usize,
    /// Scale images of any other size to `image_size` x `image_size` (aspect ratio not kept)
    /// instead of refusing them.
    pub resize: bool,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        Self {
            image_size: 32,
            resize: false,
        }
    }
}

/// Where an image's bytes are.
enum Source {
    File(PathBuf),
    /// Already read from an archive stream.
    Bytes(Vec<u8>),
}

struct Item {
    /// Path inside the class folder; images sort by it, bytewise.
    name: Vec<u8>,
    /// How to name the image in messages.
    shown: String,
    source: Source,
}

/// Class name -> images, for one split. `BTreeMap<String, _>` orders names bytewise.
type Classes = BTreeMap<String, Vec<Item>>;

/// Loads an image-folder dataset from a folder or a `.tar.gz` / `.tgz` / `.tar` archive.
///
/// Classes are the folder names under `train/`, sorted bytewise (label = position); every test
/// class must also be a train class. Order: by class, then by path inside the class folder,
/// bytewise. Hidden files (`.DS_Store`, `._x.jpg`) and files that are not `.png`, `.jpg` or
/// `.jpeg` are ignored. Archives are read as a stream and never unpacked, so they may sit in a
/// read-only folder (their encoded images are held in memory until decoded; the real
/// 50,000 + 10,000-image CIFAR-10 JPEG archive loads in about a second on 2 cores).
/// Normalization statistics are computed from the training images.
pub fn load_image_folder(path: &Path, opts: &ImageFolderOptions) -> Result<Dataset> {
    if opts.image_size == 0 {
        return Err(Error::Options("image_size must be at least 1".into()));
    }
    let meta = fs::metadata(path).map_err(io_err("cannot read", path))?;
    let (train, test) = if meta.is_dir() {
        scan_dir(path)?
    } else {
        scan_archive(path)?
    };
    let train = train.ok_or_else(|| missing(path, "train"))?;
    let test = test.ok_or_else(|| missing(path, "test"))?;
    if train.classes.is_empty() {
        return Err(Error::BadData(format!(
            "{} holds no class folders (expected {}/<class>/<image>)",
            train.shown, train.shown
        )));
    }
    let classes: Vec<String> = train.classes.keys().cloned().collect();
    for found in [&train, &test] {
        if let Some((class, _)) = found.classes.iter().find(|(_, items)| items.is_empty()) {
            return Err(Error::BadData(format!(
                "class folder {}/{class} holds no PNG or JPEG images",
                found.shown
            )));
        }
    }
    if let Some(extra) = test
        .classes
        .keys()
        .find(|c| !train.classes.contains_key(*c))
    {
        return Err(Error::BadData(format!(
            "{}/{extra} is a class that {} lacks; test classes must be train classes",
            test.shown, train.shown
        )));
    }
    let train = decode_split(train.classes, &classes, opts)?;
    let test = decode_split(test.classes, &classes, opts)?;
    let (mean, std) = channel_stats(&train);
    Ok(Dataset {
        train: Arc::new(train),
        test: Arc::new(test),
        classes,
        mean,
        std,
        image_size: opts.image_size,
    })
}

fn missing(path: &Path, split: &str) -> Error {
    Error::BadData(format!(
        "{} has no {split}/ folder (expected {split}/<class>/<image>, directly or under one \
         top-level folder, e.g. cifar10-jpeg/{split}/airplane/0001.jpg)",
        path.display()
    ))
}

/// One split's class folders as found, before decoding.
struct Found {
    /// The split folder, for messages.
    shown: String,
    classes: Classes,
}

fn is_image_name(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with(b".")
        && (lower.ends_with(b".png") || lower.ends_with(b".jpg") || lower.ends_with(b".jpeg"))
}

fn utf8_class(raw: &[u8], shown: impl Fn() -> String) -> Result<String> {
    String::from_utf8(raw.to_vec())
        .map_err(|_| Error::BadData(format!("class folder name {} is not UTF-8", shown())))
}

// ---- folders ----

fn scan_dir(path: &Path) -> Result<(Option<Found>, Option<Found>)> {
    let root = if path.join("train").is_dir() || path.join("test").is_dir() {
        path.to_path_buf()
    } else {
        // One top-level folder holding train/ and test/, as the archives unpack.
        let inner: Vec<PathBuf> = list_dir(path)?
            .into_iter()
            .filter(|p| p.join("train").is_dir() || p.join("test").is_dir())
            .collect();
        match inner.as_slice() {
            [one] => one.clone(),
            _ => path.to_path_buf(),
        }
    };
    let scan = |split: &str| -> Result<Option<Found>> {
        let dir = root.join(split);
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut classes = Classes::new();
        // Every folder once, by its real path: links are followed (a dataset may link to
        // images elsewhere), but a link loop or two links to one folder would never end or
        // count its images twice.
        let mut visited = HashSet::new();
        enter(&dir, &mut visited)?;
        for entry in list_dir(&dir)? {
            let name = file_name_bytes(&entry);
            if name.starts_with(b".") {
                continue;
            }
            if entry.is_dir() {
                let class = utf8_class(&name, || entry.display().to_string())?;
                let mut items = Vec::new();
                walk_class(&entry, &entry, &mut items, &mut visited)?;
                classes.insert(class, items);
            } else if is_image_name(&name) {
                return Err(Error::BadData(format!(
                    "{} is not inside a class folder (expected {}/<class>/<image>)",
                    entry.display(),
                    dir.display()
                )));
            }
        }
        Ok(Some(Found {
            shown: dir.display().to_string(),
            classes,
        }))
    };
    Ok((scan("train")?, scan("test")?))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        out.push(entry.map_err(io_err("cannot list", dir))?.path());
    }
    Ok(out)
}

fn file_name_bytes(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default()
}

/// Marks folder `dir` as walked: an error if it was reached before (see `scan_dir`).
fn enter(dir: &Path, visited: &mut HashSet<PathBuf>) -> Result<()> {
    let real = fs::canonicalize(dir).map_err(io_err("cannot resolve", dir))?;
    if !visited.insert(real.clone()) {
        return Err(Error::BadData(format!(
            "{} leads to {}, a folder already read (a link loop, or two links to one folder): \
             its images would be counted twice",
            dir.display(),
            real.display()
        )));
    }
    Ok(())
}

/// Collects the images under a class folder, recursively (subfolders are part of the name).
fn walk_class(
    class_dir: &Path,
    dir: &Path,
    items: &mut Vec<Item>,
    visited: &mut HashSet<PathBuf>,
) -> Result<()> {
    enter(dir, visited)?;
    for path in list_dir(dir)? {
        let name = file_name_bytes(&path);
        if name.starts_with(b".") {
            continue;
        }
        if items.len() >= MAX_ENTRIES {
            return Err(Error::BadData(format!(
                "{} holds more than {MAX_ENTRIES} images",
                class_dir.display()
            )));
        }
        if path.is_dir() {
            walk_class(class_dir, &path, items, visited)?;
        } else if is_image_name(&name) {
            // strip_prefix cannot fail: `path` was listed under `class_dir`.
            let rel = path.strip_prefix(class_dir).unwrap_or(&path);
            items.push(Item {
                name: rel.as_os_str().as_encoded_bytes().to_vec(),
                shown: path.display().to_string(),
                source: Source::File(path.clone()),
            });
        }
    }
    Ok(())
}

// ---- archives ----

struct Entry {
    parts: Vec<Vec<u8>>,
    /// `Some` for image files, `None` for folders.
    bytes: Option<Vec<u8>>,
}

/// For a tar extension entry (GNU long name or link, pax header), read under a 64 KiB cap:
/// `Some(path)` with the path it gives the next entry, if any; `None` for any other entry.
fn extension_path<R: Read>(
    entry: &mut tar::Entry<R>,
    kind: tar::EntryType,
    after: impl Fn() -> String,
) -> Result<Option<Option<Vec<u8>>>> {
    let pax = matches!(
        kind,
        tar::EntryType::XHeader | tar::EntryType::XGlobalHeader
    );
    if !(pax || kind.is_gnu_longname() || kind.is_gnu_longlink()) {
        return Ok(None);
    }
    let shown = || format!("the tar extension header after {:?}", after());
    let data = read_capped(entry, 64 << 10, 0, shown, "a tar extension header")?;
    if kind.is_gnu_longname() {
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        return Ok(Some(Some(data[..end].to_vec())));
    }
    if kind == tar::EntryType::XHeader {
        // Records "LEN path=VALUE\n"; only the path matters here.
        for record in data.split(|&b| b == b'\n') {
            let text = record.splitn(2, |&b| b == b' ').nth(1).unwrap_or(&[]);
            if let Some(value) = text.strip_prefix(b"path=") {
                return Ok(Some(Some(value.to_vec())));
            }
        }
    }
    Ok(Some(None))
}

/// The folder and image entries of the archive at `path`, its images read (each capped).
fn read_archive(path: &Path) -> Result<Vec<Entry>> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if !fs::metadata(path)
        .map_err(io_err("cannot read", path))?
        .is_file()
    {
        return Err(Error::BadData(format!(
            "{} is neither a folder nor a regular file (a FIFO or device): refusing to read it",
            path.display()
        )));
    }
    let file = File::open(path).map_err(io_err("cannot open", path))?;
    let reader: Box<dyn Read> = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else if name.ends_with(".tar") {
        Box::new(BufReader::new(file))
    } else {
        return Err(Error::BadData(format!(
            "{} is neither a folder nor a .tar.gz / .tgz / .tar archive",
            path.display()
        )));
    };
    let bad = |e: std::io::Error| {
        Error::BadData(format!("cannot read the archive {}: {e}", path.display()))
    };
    let mut entries = Vec::new();
    // Every path once (a second entry with the same path would duplicate an image), and the
    // encoded images held in memory bounded in count and bytes.
    let mut seen: HashSet<Vec<Vec<u8>>> = HashSet::new();
    let mut held = 0u64;
    // The last entry read, for messages: a lying header shows up when the next one is sought.
    let mut last = String::new();
    let mut tar = tar::Archive::new(reader);
    // Raw entries: the tar crate would read a GNU long-name or pax header's data whole into
    // memory, however large its header says it is. Here they are read capped (see
    // `extension_path`), and a pax `size` record cannot change how much an entry holds.
    let mut long_path: Option<Vec<u8>> = None;
    for (index, entry) in tar.entries().map_err(bad)?.raw(true).enumerate() {
        if index >= MAX_ENTRIES {
            return Err(Error::BadData(format!(
                "{} has more than {MAX_ENTRIES} entries",
                path.display()
            )));
        }
        let mut entry = entry.map_err(|e| {
            Error::BadData(format!(
                "cannot read the archive {} after its entry {last:?}: {e}",
                path.display()
            ))
        })?;
        let kind = entry.header().entry_type();
        if let Some(found) = extension_path(&mut entry, kind, || last.clone())? {
            long_path = found;
            continue;
        }
        let path_bytes = long_path
            .take()
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        last = String::from_utf8_lossy(&path_bytes).into_owned();
        let parts: Vec<Vec<u8>> = path_bytes
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
            .map(<[u8]>::to_vec)
            .collect();
        let Some(last) = parts.last() else { continue };
        if kind.is_dir() {
            entries.push(Entry { parts, bytes: None });
        } else if kind.is_file() && is_image_name(last) && !parts.iter().any(|p| p[0] == b'.') {
            let shown = || {
                format!(
                    "{}:{}",
                    path.display(),
                    String::from_utf8_lossy(&parts.join(&b'/'))
                )
            };
            if !seen.insert(parts.clone()) {
                return Err(Error::BadData(format!(
                    "{} appears twice in the archive (it would be counted twice)",
                    shown()
                )));
            }
            // The header's size is only a hint: the read itself is capped.
            let bytes = read_capped(&mut entry, MAX_IMAGE_FILE_BYTES, 0, shown, "an image")?;
            held += bytes.len() as u64;
            if held > MAX_ARCHIVE_IMAGE_BYTES {
                return Err(Error::BadData(format!(
                    "{} holds more than {MAX_ARCHIVE_IMAGE_BYTES} bytes of images",
                    path.display()
                )));
            }
            entries.push(Entry {
                parts,
                bytes: Some(bytes),
            });
        }
    }
    Ok(entries)
}

fn scan_archive(path: &Path) -> Result<(Option<Found>, Option<Found>)> {
    let mut entries = read_archive(path)?;
    // The root is "" when train/ or test/ is at the top, else the one top-level folder
    // holding them.
    let is_split = |p: &[u8]| p == b"train" || p == b"test";
    let root: usize = if entries.iter().any(|e| is_split(&e.parts[0])) {
        0
    } else {
        let mut tops: Vec<&[u8]> = entries
            .iter()
            .filter(|e| e.parts.len() > 1 && is_split(&e.parts[1]))
            .map(|e| e.parts[0].as_slice())
            .collect();
        tops.sort();
        tops.dedup();
        if tops.len() != 1 {
            return Ok((None, None));
        }
        let top = tops[0].to_vec();
        entries.retain(|e| e.parts[0] == top);
        1
    };
    let prefix = |split: &str| {
        let mut s = format!("{}:", path.display());
        if root == 1 {
            s.push_str(&String::from_utf8_lossy(&entries[0].parts[0]));
            s.push('/');
        }
        s.push_str(split);
        s
    };
    let (train_shown, test_shown) = (prefix("train"), prefix("test"));
    let mut train: Option<Found> = None;
    let mut test: Option<Found> = None;
    for entry in entries {
        let parts = &entry.parts[root..];
        let Some(split) = parts.first() else { continue };
        let (slot, shown) = match split.as_slice() {
            b"train" => (&mut train, &train_shown),
            b"test" => (&mut test, &test_shown),
            _ => continue,
        };
        let found = slot.get_or_insert_with(|| Found {
            shown: shown.clone(),
            classes: Classes::new(),
        });
        let whole = || {
            format!(
                "{shown}/{}",
                String::from_utf8_lossy(&parts[1..].join(&b'/'))
            )
        };
        match (parts.len(), entry.bytes) {
            (1, _) => {}
            (2, Some(_)) => {
                return Err(Error::BadData(format!(
                    "{} is not inside a class folder (expected {shown}/<class>/<image>)",
                    whole()
                )))
            }
            (2, None) => {
                let class = utf8_class(&parts[1], whole)?;
                found.classes.entry(class).or_default();
            }
            (_, bytes) => {
                let class = utf8_class(&parts[1], whole)?;
                let items = found.classes.entry(class).or_default();
                if let Some(bytes) = bytes {
                    items.push(Item {
                        name: parts[2..].join(&b'/'),
                        shown: whole(),
                        source: Source::Bytes(bytes),
                    });
                }
            }
        }
    }
    Ok((train, test))
}

// ---- decoding ----

/// Decodes every image of a split, in parallel, into one compact array in dataset order.
fn decode_split(classes: Classes, names: &[String], opts: &ImageFolderOptions) -> Result<Split> {
    let mut items: Vec<(u32, Item)> = Vec::new();
    for (class, mut list) in classes {
        // `names` holds every class checked by the caller, so the lookup always succeeds.
        let label = names.iter().position(|n| *n == class).unwrap_or(0) as u32;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        items.extend(list.into_iter().map(|item| (label, item)));
    }
    let size = opts.image_size;
    let per_image = 3 * size * size;
    let total = (items.len() as u64).saturating_mul(per_image as u64);
    if total > MAX_DATASET_BYTES {
        return Err(Error::BadData(format!(
            "{} images of {size}x{size} would take {total} bytes decoded, over the cap of \
             {MAX_DATASET_BYTES}: use a smaller image size or fewer images",
            items.len()
        )));
    }
    let mut images = vec![0u8; items.len() * per_image];
    images
        .par_chunks_mut(per_image)
        .zip(items.par_iter())
        .try_for_each(|(out, (_, item))| decode_into(item, opts, out))?;
    Ok(Split {
        len: items.len(),
        labels: items.iter().map(|(label, _)| *label).collect(),
        images,
        image_size: size,
    })
}

fn decode_into(item: &Item, opts: &ImageFolderOptions, out: &mut [u8]) -> Result<()> {
    let read;
    let bytes = match &item.source {
        Source::Bytes(b) => b.as_slice(),
        Source::File(p) => {
            read = read_regular(p, MAX_IMAGE_FILE_BYTES, "an image")?;
            read.as_slice()
        }
    };
    let decoded = decode_image(bytes, &item.shown)?;
    let mut rgb = decoded.into_rgb8();
    let size = opts.image_size;
    let (w, h) = rgb.dimensions();
    if (w as usize, h as usize) != (size, size) {
        if !opts.resize {
            return Err(Error::BadData(format!(
                "image {} is {w}x{h}, expected {size}x{size} (enable resize to scale it)",
                item.shown
            )));
        }
        rgb = image::imageops::resize(
            &rgb,
            size as u32,
            size as u32,
            image::imageops::FilterType::Triangle,
        );
    }
    // Interleaved RGB -> planar.
    let plane = size * size;
    for (i, px) in rgb.pixels().enumerate() {
        out[i] = px[0];
        out[plane + i] = px[1];
        out[2 * plane + i] = px[2];
    }
    Ok(())
}

/// Per-channel mean and (population) std of `pixel / 255` over a split, from exact integer sums.
fn channel_stats(split: &Split) -> ([f32; 3], [f32; 3]) {
    let plane = split.image_size * split.image_size;
    let per_image = 3 * plane;
    let sums = split
        .images
        .par_chunks(per_image.max(1))
        .fold(
            || [[0u64; 2]; 3],
            |mut acc, img| {
                for (c, chan) in img.chunks(plane).enumerate() {
                    for &v in chan {
                        acc[c][0] += u64::from(v);
                        acc[c][1] += u64::from(v) * u64::from(v);
                    }
                }
                acc
            },
        )
        .reduce(
            || [[0u64; 2]; 3],
            |mut a, b| {
                for c in 0..3 {
                    a[c][0] += b[c][0];
                    a[c][1] += b[c][1];
                }
                a
            },
        );
    let n = (split.len * plane).max(1) as f64;
    let mut mean = [0f32; 3];
    let mut std = [0f32; 3];
    for c in 0..3 {
        let m = sums[c][0] as f64 / n / 255.0;
        let sq = sums[c][1] as f64 / n / (255.0 * 255.0);
        mean[c] = m as f32;
        // A constant channel would give std 0 and divide by zero when normalizing.
        std[c] = ((sq - m * m).max(0.0).sqrt() as f32).max(1e-6);
    }
    (mean, std)
}
