//! Checkpoints as safetensors files with PyTorch's `state_dict` names, so weights move between
//! this project and PyTorch without renaming (`safetensors.torch.load_file` +
//! `load_state_dict(strict=True)` reads ours; ours reads theirs).
//!
//! Parameters and buffers are f32 in PyTorch layout; `num_batches_tracked` is an int64 scalar
//! (shape `[]`), as PyTorch writes it. A string-to-string metadata map describes the model.
//! Loading checks every tensor (missing, unexpected, wrong shape or dtype, truncated or corrupt
//! file) *before* changing anything, so a refused file leaves the model as it was. Saving
//! writes a temporary file in the same folder and renames it over the target.
use crate::{Error, Module, Result, Slot};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};
use senet_tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The metadata map of a checkpoint.
pub type Metadata = BTreeMap<String, String>;

fn err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so a crash never
/// leaves a half-written file under the real name.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |err| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| err(path, "not a file path"))?;
    let tmp: PathBuf = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    write_synced(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_parent(path).map_err(io)
}

/// The largest checkpoint file read (senetv2-101 at width 64 is 0.2 GB; width 1024, the
/// widest config, about 16x that per stage).
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;

/// The bytes of a checkpoint file: a regular file (through a link is fine) of at most
/// [`MAX_CHECKPOINT_BYTES`]. A FIFO or device would block or never end.
fn read_checkpoint_file(path: &Path) -> Result<Vec<u8>> {
    let io = |err| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(err(path, "not a regular file (a folder, FIFO or device)"));
    }
    if meta.len() > MAX_CHECKPOINT_BYTES {
        return Err(err(
            path,
            format!(
                "{} bytes, over the {MAX_CHECKPOINT_BYTES}-byte cap for a checkpoint",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(io)
}

/// Writes `bytes` to `path` and waits until they are on disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Waits until the folder holding `path` has its entries (a rename, a new file) on disk.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Syncs a folder's entries (on Unix; elsewhere a no-op, as a folder cannot be opened there).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// One tensor as it is written: name, dtype, shape and little-endian bytes.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Every named value of `module` as file entries (reads GPU tensors back).
fn entries(module: &mut dyn Module) -> Result<Vec<(String, Entry)>> {
    let mut out = Vec::new();
    let mut failure = None;
    module.visit("", &mut |name, slot| {
        let entry = match slot {
            Slot::Param(t) | Slot::Buffer(t) => t.to_vec::<f32>().map(|v| Entry {
                dtype: Dtype::F32,
                shape: t.shape().to_vec(),
                bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            }),
            Slot::Counter(c) => Ok(Entry {
                dtype: Dtype::I64,
                shape: vec![],
                bytes: c.to_le_bytes().to_vec(),
            }),
        };
        match entry {
            Ok(e) => out.push((name.to_string(), e)),
            Err(e) => failure = failure.take().or(Some(e)),
        }
    });
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// Serializes `module` with `metadata` to safetensors bytes.
pub fn to_bytes(module: &mut dyn Module, metadata: &Metadata) -> Result<Vec<u8>> {
    let entries = entries(module)?;
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .map(|(n, e)| TensorView::new(e.dtype, e.shape.clone(), &e.bytes).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("building a checkpoint tensor: {e}")))?;
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Config(format!("serializing a checkpoint: {e}")))
}

/// Saves `module` to `path` (atomically) with `metadata`.
pub fn save(module: &mut dyn Module, metadata: &Metadata, path: &Path) -> Result<()> {
    write_atomically(path, &to_bytes(module, metadata)?)
}

/// Explains a safetensors parse error in terms of the file: what is wrong and at which byte.
fn describe(path: &Path, bytes: &[u8], e: SafeTensorError) -> Error {
    let len = bytes.len();
    let header = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    match e {
        SafeTensorError::HeaderTooSmall => err(path, format!("not a safetensors file: only {len} bytes, the 8-byte header length at offset 0 is missing")),
        SafeTensorError::InvalidHeaderLength | SafeTensorError::HeaderTooLarge => {
            err(path, format!("the header length at offset 0 says {} bytes, but the file has {len} bytes (truncated or not a safetensors file)", header.unwrap_or(0)))
        }
        SafeTensorError::InvalidHeader(_) | SafeTensorError::InvalidHeaderDeserialization(_) | SafeTensorError::JsonError(_) => err(path, format!("the JSON header at offset 8 is corrupt: {e}")),
        SafeTensorError::MetadataIncompleteBuffer => {
            // The header parsed; find where its tensors say the data ends.
            let n = header.unwrap_or(0) as usize;
            let end = std::str::from_utf8(&bytes[8..8 + n])
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|v| v.as_object().map(|o| o.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0)))
                .unwrap_or(0) as usize;
            err(path, format!("the tensors need {} bytes up to offset {}, but the file ends at byte {len} (truncated or corrupt)", end, 8 + n + end))
        }
        SafeTensorError::InvalidOffset(name) => err(path, format!("tensor {name}: its data offsets in the header are invalid (corrupt file)")),
        other => err(path, format!("corrupt safetensors file: {other}")),
    }
}

/// The metadata of a checkpoint (empty for files without any, e.g. saved by PyTorch).
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let bytes = read_checkpoint_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| describe(path, &bytes, e))?;
    Ok(meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Loads every tensor of `module` from safetensors `bytes` (`path` is for messages). Nothing
/// is changed unless the whole file matches the module. Returns the file's metadata.
pub fn load_bytes(module: &mut dyn Module, bytes: &[u8], path: &Path) -> Result<Metadata> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| describe(path, bytes, e))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| describe(path, bytes, e))?;

    // First pass: what the module expects, checked against the file.
    let mut expected: Vec<(String, Vec<usize>, bool)> = Vec::new(); // (name, shape, is_counter)
    module.visit("", &mut |name, slot| match slot {
        Slot::Param(t) | Slot::Buffer(t) => {
            expected.push((name.to_string(), t.shape().to_vec(), false))
        }
        Slot::Counter(_) => expected.push((name.to_string(), vec![], true)),
    });
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    let mut counters: HashMap<String, i64> = HashMap::new();
    let mut missing = Vec::new();
    for (name, shape, counter) in &expected {
        let view = match file.tensor(name) {
            Ok(v) => v,
            Err(_) => {
                missing.push(name.clone());
                continue;
            }
        };
        if view.shape() != shape.as_slice() {
            return Err(err(
                path,
                format!(
                    "tensor {name} has shape {:?}, the model expects {shape:?}",
                    view.shape()
                ),
            ));
        }
        let data = view.data();
        if *counter {
            // PyTorch writes num_batches_tracked as int64; accept the other integer widths too.
            let v = match view.dtype() {
                Dtype::I64 => i64::from_le_bytes(
                    data.try_into()
                        .map_err(|_| err(path, format!("tensor {name}: 8 bytes expected")))?,
                ),
                Dtype::I32 => i32::from_le_bytes(
                    data.try_into()
                        .map_err(|_| err(path, format!("tensor {name}: 4 bytes expected")))?,
                ) as i64,
                other => {
                    return Err(err(
                        path,
                        format!("tensor {name} has dtype {other:?}, expected I64"),
                    ))
                }
            };
            counters.insert(name.clone(), v);
        } else {
            if view.dtype() != Dtype::F32 {
                return Err(err(
                    path,
                    format!("tensor {name} has dtype {:?}, expected F32", view.dtype()),
                ));
            }
            values.insert(
                name.clone(),
                data.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect(),
            );
        }
    }
    if !missing.is_empty() {
        return Err(err(
            path,
            format!(
                "missing {} tensor(s) the model needs: {}",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    let known: std::collections::HashSet<&str> =
        expected.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut unexpected: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !known.contains(n))
        .map(str::to_string)
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(err(
            path,
            format!(
                "{} unexpected tensor(s) the model does not have: {}",
                unexpected.len(),
                unexpected.join(", ")
            ),
        ));
    }

    // Second pass: everything checked, now assign (on each slot's current device).
    let mut failure = None;
    module.visit("", &mut |name, slot| {
        let r = match slot {
            Slot::Param(t) => place(values.remove(name), t).map(|n| *t = n.requires_grad()),
            Slot::Buffer(t) => place(values.remove(name), t).map(|n| *t = n),
            Slot::Counter(c) => {
                *c = counters[name];
                Ok(())
            }
        };
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// A new tensor with `values`, shaped and placed like `like`.
fn place(values: Option<Vec<f32>>, like: &Tensor) -> senet_tensor::Result<Tensor> {
    let v = values.expect("checked in the first pass");
    Tensor::from_vec(v, like.shape())?.to_device(like.device())
}

/// Loads `path` into `module`; see [`load_bytes`].
pub fn load(module: &mut dyn Module, path: &Path) -> Result<Metadata> {
    let bytes = read_checkpoint_file(path)?;
    load_bytes(module, &bytes, path)
}

/// Saves named f32 tensors (e.g. optimizer state) with `metadata`, atomically.
pub fn save_tensors(tensors: &[(String, Tensor)], metadata: &Metadata, path: &Path) -> Result<()> {
    write_atomically(path, &tensors_to_bytes(tensors, metadata)?)
}

/// Serializes named f32 tensors with `metadata` to safetensors bytes.
pub fn tensors_to_bytes(tensors: &[(String, Tensor)], metadata: &Metadata) -> Result<Vec<u8>> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            Ok((
                n.clone(),
                t.shape().to_vec(),
                t.to_vec::<f32>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ))
        })
        .collect::<senet_tensor::Result<_>>()?;
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("building a tensor view: {e}")))?;
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Config(format!("serializing tensors: {e}")))
}

/// Loads every (f32) tensor of a file saved by [`save_tensors`] onto `device`.
pub fn load_tensors(
    path: &Path,
    device: senet_tensor::Device,
) -> Result<(BTreeMap<String, Tensor>, Metadata)> {
    let bytes = read_checkpoint_file(path)?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| describe(path, &bytes, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| describe(path, &bytes, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(err(
                path,
                format!("tensor {name} has dtype {:?}, expected F32", view.dtype()),
            ));
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        out.insert(name, Tensor::from_vec(v, view.shape())?.to_device(device)?);
    }
    Ok((
        out,
        meta.metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    ))
}
