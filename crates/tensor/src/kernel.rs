//! How an op runs on either device: the one place in this crate that chooses between the CPU
//! and the GPU kernel, and between f32 and f64.
//!
//! An op describes its computation as a [`Kernel`]: a small struct holding the sizes (a conv
//! geometry, a reduction's `[outer, reduced, inner]`, ...) with one method per device — `cpu`,
//! generic over the element type, calls `senet_cpu`; `gpu` calls `senet_gpu`. [`run`] looks at
//! where the inputs live and calls the matching method, so the op functions in `ops/` never
//! test the device or the dtype. Optimizer steps, which update existing buffers, are an
//! [`Update`] run by [`run_update`].
use crate::layout::Layout;
use crate::profile;
use crate::storage::{with_dtype, CpuElement, IndexStorage, Indices, Storage};
use crate::{Error, Result, Tensor};
use senet_gpu::GpuBuffer;
use std::collections::VecDeque;
use std::sync::Arc;

/// What a kernel reads on one device: for each tensor argument its whole buffer and its
/// layout (`None` for an absent optional argument such as a bias), and index buffers.
pub(crate) struct Inputs<'a, B: ?Sized, I: ?Sized> {
    tensors: Vec<Option<(&'a B, &'a Layout)>>,
    indices: Vec<&'a I>,
}

/// Inputs on the CPU: element slices and `u32` index slices.
pub(crate) type CpuIn<'a, T> = Inputs<'a, [T], [u32]>;
/// Inputs on a GPU: buffers of f32 values and of `u32` indices.
pub(crate) type GpuIn<'a> = Inputs<'a, GpuBuffer, GpuBuffer>;

impl<'a, B: ?Sized, I: ?Sized> Inputs<'a, B, I> {
    fn arg(&self, i: usize) -> Option<(&'a B, &'a Layout)> {
        self.tensors.get(i).copied().flatten()
    }
    /// Argument `i` as a strided view: the whole buffer and the layout that reads it.
    pub fn view(&self, i: usize) -> (&'a B, &'a Layout) {
        // The op that lists its arguments also writes the kernel that reads them.
        self.arg(i)
            .expect("a kernel reads only the arguments its op passes")
    }
    /// Index buffer `i`.
    pub fn index(&self, i: usize) -> &'a I {
        self.indices[i]
    }
}

impl<'a, T> CpuIn<'a, T> {
    /// The elements of argument `i`, which the op made contiguous.
    pub fn get(&self, i: usize) -> &'a [T] {
        let (buf, layout) = self.view(i);
        dense_slice(buf, layout)
    }
    /// The elements of optional argument `i`.
    pub fn opt(&self, i: usize) -> Option<&'a [T]> {
        self.arg(i).map(|(buf, layout)| dense_slice(buf, layout))
    }
}

fn dense_slice<'a, T>(buf: &'a [T], layout: &Layout) -> &'a [T] {
    debug_assert!(layout.is_contiguous());
    &buf[layout.offset()..layout.offset() + layout.numel()]
}

impl<'a> GpuIn<'a> {
    /// The buffer of argument `i`, which the op made contiguous and exactly its own (GPU
    /// kernels read whole buffers).
    pub fn get(&self, i: usize) -> &'a GpuBuffer {
        let (buf, layout) = self.view(i);
        debug_assert!(
            layout.is_contiguous() && layout.offset() == 0 && buf.len() == layout.numel()
        );
        buf
    }
    /// The buffer of optional argument `i`.
    pub fn opt(&self, i: usize) -> Option<&'a GpuBuffer> {
        self.arg(i).map(|_| self.get(i))
    }
}

/// What a kernel returns: new value buffers and new index buffers, in the order the op reads
/// them back.
pub(crate) struct Outputs<V, I> {
    pub values: Vec<V>,
    pub indices: Vec<I>,
}

impl<V, I> Outputs<V, I> {
    pub fn one(value: V) -> Self {
        Outputs::many(vec![value])
    }
    pub fn many(values: Vec<V>) -> Self {
        Outputs {
            values,
            indices: Vec::new(),
        }
    }
    pub fn with_index(mut self, index: I) -> Self {
        self.indices.push(index);
        self
    }
}

pub(crate) type CpuOut<T> = Outputs<Vec<T>, Vec<u32>>;
pub(crate) type GpuOut = Outputs<GpuBuffer, GpuBuffer>;

/// One computation with an implementation per device.
pub(crate) trait Kernel {
    /// Names the op in errors.
    const NAME: &'static str;
    /// On CPU values, f32 or f64.
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T>;
    /// On GPU buffers of f32.
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut>;
    /// How `senet bench --profile` names this call (kernels with a geometry name it, so that
    /// each conv shape gets its own row) and the floating-point operations it does, where
    /// those are defined.
    fn profile(&self) -> (String, Option<f64>) {
        (Self::NAME.to_string(), None)
    }
}

/// The buffers a kernel produced, handed out as tensors in order.
pub(crate) struct Produced {
    values: VecDeque<Arc<Storage>>,
    indices: VecDeque<Indices>,
}

impl Produced {
    /// The next value buffer as a contiguous tensor of `shape`, recording `op` for backward.
    pub fn tensor(&mut self, shape: &[usize], op: Option<crate::Op>) -> Tensor {
        let storage = self
            .values
            .pop_front()
            .expect("the kernel made this output");
        debug_assert!(storage.len() >= shape.iter().product());
        Tensor::from_storage(storage, Layout::contiguous(shape), op)
    }
    /// The next index buffer.
    pub fn indices(&mut self) -> Indices {
        self.indices
            .pop_front()
            .expect("the kernel made this output")
    }
}

/// Runs `kernel` on the device of its tensor arguments, which must all share one device and
/// dtype.
pub(crate) fn run<K: Kernel>(kernel: &K, tensors: &[&Tensor]) -> Result<Produced> {
    let args: Vec<Option<&Tensor>> = tensors.iter().map(|&t| Some(t)).collect();
    run_with(kernel, &args, &[])
}

/// [`run`] with optional tensor arguments (`None` for an absent bias, say) and `indices`
/// kept from an earlier op.
pub(crate) fn run_with<K: Kernel>(
    kernel: &K,
    tensors: &[Option<&Tensor>],
    indices: &[&Indices],
) -> Result<Produced> {
    let present: Vec<&Tensor> = tensors.iter().flatten().copied().collect();
    let first = present
        .first()
        .ok_or_else(|| Error::invalid(K::NAME, "a kernel needs at least one tensor"))?;
    for t in &present[1..] {
        crate::ops::check_same(K::NAME, first, t)?;
    }
    let index_storage: Vec<&IndexStorage> = indices.iter().map(|i| &*i.0).collect();
    match first.storage() {
        Storage::Gpu(_) => {
            let x = GpuIn {
                tensors: args(tensors, |s| match s {
                    Storage::Gpu(b) => Some(b),
                    Storage::Cpu(_) => None,
                })?,
                indices: index_args(K::NAME, &index_storage, |s| match s {
                    IndexStorage::Gpu(b) => Some(b),
                    IndexStorage::Cpu(_) => None,
                })?,
            };
            let gpu = first_gpu(&present)?;
            let out = profile::timed_gpu(&gpu, || kernel.profile(), || Ok(kernel.gpu(&x)?))?;
            Ok(produced(out, Storage::gpu, IndexStorage::Gpu))
        }
        Storage::Cpu(_) => with_dtype!(first.dtype(), T => {
            let x = CpuIn::<T> {
                tensors: args(tensors, |s| match s {
                    Storage::Cpu(c) => T::slice(c),
                    Storage::Gpu(_) => None,
                })?,
                indices: index_args(K::NAME, &index_storage, |s| match s {
                    IndexStorage::Cpu(v) => Some(&v[..]),
                    IndexStorage::Gpu(_) => None,
                })?,
            };
            let out = profile::timed(|| kernel.profile(), || kernel.cpu(&x));
            Ok(produced(out, |v| Storage::cpu(T::wrap(v)), IndexStorage::Cpu))
        }),
    }
}

/// The GPU that holds the first tensor's buffer (the caller checked that it is on a GPU).
fn first_gpu(tensors: &[&Tensor]) -> Result<std::sync::Arc<senet_gpu::Gpu>> {
    match tensors.first().map(|t| t.storage()) {
        Some(Storage::Gpu(b)) => Ok(b.gpu().clone()),
        _ => Err(wrong_device()),
    }
}

/// Each argument's buffer, as `get` finds it in its storage (the device and dtype were
/// checked, so `get` finds every one).
fn args<'a, B: ?Sized>(
    tensors: &[Option<&'a Tensor>],
    get: impl Fn(&'a Storage) -> Option<&'a B>,
) -> Result<Vec<Option<(&'a B, &'a Layout)>>> {
    tensors
        .iter()
        .map(|t| {
            t.map(|t| {
                let buf = get(t.storage()).ok_or_else(wrong_device)?;
                Ok((buf, t.layout()))
            })
            .transpose()
        })
        .collect()
}

fn index_args<'a, I: ?Sized>(
    op: &'static str,
    indices: &[&'a IndexStorage],
    get: impl Fn(&'a IndexStorage) -> Option<&'a I>,
) -> Result<Vec<&'a I>> {
    indices
        .iter()
        .map(|&s| get(s).ok_or_else(|| Error::invalid(op, "indices are on another device")))
        .collect()
}

fn produced<V, I>(
    out: Outputs<V, I>,
    value: impl Fn(V) -> Storage,
    index: impl Fn(I) -> IndexStorage,
) -> Produced {
    Produced {
        values: out.values.into_iter().map(|v| Arc::new(value(v))).collect(),
        indices: out
            .indices
            .into_iter()
            .map(|i| Indices(Arc::new(index(i))))
            .collect(),
    }
}

/// An update of existing buffers (an optimizer step): `state` (the parameter first, then
/// its optimizer state) changes in place, reading `inputs` (the gradient).
pub(crate) trait Update {
    const NAME: &'static str;
    fn cpu<T: CpuElement>(&self, state: &mut [&mut [T]], inputs: &[&[T]]);
    fn gpu(&self, state: &[&GpuBuffer], inputs: &[&GpuBuffer]) -> senet_gpu::Result<()>;
}

/// Runs `update` and returns the updated state buffers. On a GPU they are the very buffers of
/// `state`, changed in place (every handle sees the new values, as with PyTorch's in-place
/// `step()`). On the CPU a state tensor that is the only handle on its buffer gives the buffer
/// up and it is updated in place; one whose buffer is shared (a caller kept a clone) is copied
/// first, so no other handle sees its values change. Copying every parameter and its velocity
/// each step had been half of the SGD update's time.
/// Every tensor must be ready for a kernel (`contiguous_detached`): on a GPU its buffer is
/// then exactly its elements, which is what the update walks.
pub(crate) fn run_update<U: Update>(
    update: &U,
    state: Vec<Tensor>,
    inputs: &[&Tensor],
) -> Result<Vec<Arc<Storage>>> {
    for t in state.iter().chain(inputs.iter().copied()) {
        crate::ops::check_same(U::NAME, &state[0], t)?;
    }
    debug_assert!(state
        .iter()
        .chain(inputs.iter().copied())
        .all(|t| t.storage().kernel_ready(t.layout())));
    match state[0].storage() {
        Storage::Gpu(_) => {
            let all: Vec<Option<&Tensor>> = state
                .iter()
                .chain(inputs.iter().copied())
                .map(Some)
                .collect();
            let bufs = args(&all, |s| match s {
                Storage::Gpu(b) => Some(b),
                Storage::Cpu(_) => None,
            })?;
            let bufs: Vec<&GpuBuffer> = bufs.into_iter().flatten().map(|(b, _)| b).collect();
            let gpu = bufs[0].gpu().clone();
            profile::timed_gpu(
                &gpu,
                || (U::NAME.to_string(), None),
                || Ok(update.gpu(&bufs[..state.len()], &bufs[state.len()..])?),
            )?;
            Ok(state.iter().map(|t| t.storage_arc()).collect())
        }
        Storage::Cpu(_) => with_dtype!(state[0].dtype(), T => {
            let inputs: Vec<Option<&Tensor>> = inputs.iter().copied().map(Some).collect();
            let x = CpuIn::<T> { tensors: args(&inputs, |s| match s {
                Storage::Cpu(c) => T::slice(c),
                Storage::Gpu(_) => None,
            })?, indices: Vec::new() };
            let read: Vec<&[T]> = (0..inputs.len()).map(|i| x.get(i)).collect();
            profile::timed(|| (U::NAME.to_string(), None), || -> Result<Vec<Arc<Storage>>> {
                let mut bufs = state.into_iter().map(own_buffer::<T>).collect::<Result<Vec<_>>>()?;
                let mut slices: Vec<&mut [T]> = bufs
                    .iter_mut()
                    .map(|b| match Arc::get_mut(b) {
                        Some(Storage::Cpu(c)) => T::slice_mut(c).ok_or_else(wrong_device),
                        _ => Err(wrong_device()),
                    })
                    .collect::<Result<_>>()?;
                update.cpu(&mut slices, &read);
                Ok(bufs)
            })
        }),
    }
}

fn wrong_device() -> Error {
    Error::invalid("kernel", "an argument is on another device or dtype")
}

/// `t`'s buffer, uniquely ours: itself when `t` was its only handle and covers it exactly,
/// else a copy of `t`'s elements.
fn own_buffer<T: CpuElement>(t: Tensor) -> Result<Arc<Storage>> {
    let (mut storage, layout) = t.into_storage();
    if crate::tensor::covers_whole(&storage, &layout) && Arc::get_mut(&mut storage).is_some() {
        return Ok(storage);
    }
    let buf = match &*storage {
        Storage::Cpu(c) => T::slice(c).ok_or_else(wrong_device)?,
        Storage::Gpu(_) => return Err(wrong_device()),
    };
    Ok(Arc::new(Storage::cpu(T::wrap(
        dense_slice(buf, &layout).to_vec(),
    ))))
}
