//! Adapter choice, device, buffer pool, pipeline cache, batched submission and readback.
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What can go wrong on the GPU, each turned into an error of the call that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuError {
    /// No adapter matches the request (the message lists what exists).
    NoAdapter(String),
    /// The adapter refused to create a device.
    RequestDevice(String),
    /// An allocation failed or is larger than the adapter allows.
    OutOfMemory(String),
    /// A shader, pipeline, bind group or dispatch failed validation.
    Validation(String),
    /// The device was lost (driver reset, GPU removed, ...); nothing more can run on it.
    DeviceLost(String),
    /// Reading a buffer back failed.
    Readback(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            GpuError::RequestDevice(m) => write!(f, "could not open the GPU device: {m}"),
            GpuError::OutOfMemory(m) => write!(f, "GPU out of memory: {m}"),
            GpuError::Validation(m) => write!(f, "GPU validation error: {m}"),
            GpuError::DeviceLost(m) => write!(f, "GPU device lost: {m}"),
            GpuError::Readback(m) => write!(f, "GPU readback failed: {m}"),
        }
    }
}

impl std::error::Error for GpuError {}

pub type Result<T> = std::result::Result<T, GpuError>;

/// Which adapter to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    /// A hardware GPU if there is one; `None` from [`DeviceRequest::choose`] means "use the CPU
    /// backend" (a software adapter such as lavapipe is slower than it).
    Auto,
    /// The best adapter of any kind, hardware first, software (lavapipe) last.
    Gpu,
    /// The first adapter whose name contains this (case-insensitive).
    Name(String),
}

/// One adapter as wgpu reports it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Position in [`adapters`]'s list.
    pub index: usize,
    pub name: String,
    pub backend: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub device_type: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
}

impl AdapterSummary {
    /// A real GPU, as opposed to a software rasterizer.
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.device_type.as_str(),
            "DiscreteGpu" | "IntegratedGpu" | "VirtualGpu"
        )
    }
    /// Preference order: discrete, integrated, virtual, other, CPU (software).
    fn rank(&self) -> u8 {
        match self.device_type.as_str() {
            "DiscreteGpu" => 0,
            "IntegratedGpu" => 1,
            "VirtualGpu" => 2,
            "Cpu" => 4,
            _ => 3,
        }
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// The process-wide wgpu instance and its adapters (Vulkan, Metal and DX12; never GL).
fn instance_and_adapters() -> &'static (wgpu::Instance, Vec<wgpu::Adapter>) {
    static STATE: OnceLock<(wgpu::Instance, Vec<wgpu::Adapter>)> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(desc_backends()));
        (instance, adapters)
    })
}

fn desc_backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

fn summarize(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let l = a.limits();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_buffer_size: l.max_buffer_size,
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
    }
}

/// Every adapter wgpu sees.
pub fn adapters() -> Vec<AdapterSummary> {
    instance_and_adapters()
        .1
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect()
}

impl DeviceRequest {
    /// The adapter this request picks, or `None` for `Auto` on a machine without a hardware GPU.
    pub fn choose(&self) -> Result<Option<AdapterSummary>> {
        let mut all = adapters();
        let names = || {
            let list: Vec<String> = adapters().iter().map(|a| a.to_string()).collect();
            if list.is_empty() {
                "wgpu sees no Vulkan, Metal or DX12 adapter (on Linux without a GPU, install Mesa's lavapipe: apt-get install mesa-vulkan-drivers)".to_string()
            } else {
                format!("adapters present: {}", list.join("; "))
            }
        };
        all.sort_by_key(|a| (a.rank(), a.index));
        match self {
            DeviceRequest::Auto => Ok(all.into_iter().find(|a| a.is_hardware())),
            DeviceRequest::Gpu => match all.into_iter().next() {
                Some(a) => Ok(Some(a)),
                None => Err(GpuError::NoAdapter(names())),
            },
            DeviceRequest::Name(n) => {
                let needle = n.to_lowercase();
                match all
                    .into_iter()
                    .find(|a| a.name.to_lowercase().contains(&needle))
                {
                    Some(a) => Ok(Some(a)),
                    None => Err(GpuError::NoAdapter(format!(
                        "no adapter name contains {n:?}; {}",
                        names()
                    ))),
                }
            }
        }
    }
}

/// A WGSL source with the name its pipelines are cached under.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// An f32 (or u32) array on the GPU. Dropping it returns the memory to its `Gpu`'s pool;
/// reuse is safe because the queue runs commands in the order they were recorded.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    len: usize,
    gpu: Arc<Gpu>,
}

impl GpuBuffer {
    /// Number of 4-byte elements.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
    fn raw(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("a live GpuBuffer always holds its buffer")
    }
    /// The bytes that hold the elements (the pooled buffer may be larger).
    fn byte_len(&self) -> u64 {
        (self.len as u64 * 4).max(4)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.gpu.release(b);
        }
    }
}

impl fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuBuffer({} elements on gpu:{})", self.len, self.gpu.id)
    }
}

/// Commands recorded but not yet submitted.
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
    /// The parameters of the recorded dispatches, one [`PARAM_SLOT`]-byte slot each, written
    /// to the uniform ring just before the commands are submitted.
    params: Vec<u8>,
}

/// Width, in texels, of the texture through which a dispatch may read one buffer
/// ([`Gpu::dispatch_reading_texels`]); `SG_TEXEL_ROW` in `shaders/gemm_subgroup.wgsl`.
pub const TEXEL_ROW: usize = 4096;
/// The binding of that texture (`sg_texels` in `shaders/gemm_subgroup.wgsl`).
pub const TEXELS_BINDING: u32 = 7;
/// The binding of the four-channel texture of [`Gpu::dispatch_reading_vec4_texels`]
/// (`sg4_texels` in `shaders/gemm_subgroup.wgsl`): [`TEXEL_ROW`] / 4 `rgba32float` texels
/// wide, so a row also holds [`TEXEL_ROW`] elements.
pub const TEXELS4_BINDING: u32 = 8;

/// The two textures a dispatch can read arrays through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TexelKind {
    /// `r32float`: one element per texel.
    One,
    /// `rgba32float`: four consecutive elements per texel, one fetch for all four.
    Four,
}

impl TexelKind {
    fn elements_per_texel(self) -> usize {
        match self {
            TexelKind::One => 1,
            TexelKind::Four => 4,
        }
    }
}

/// The one texture dispatches read a buffer through, grown to the largest buffer yet.
struct Texels {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    rows: u32,
}

/// Submit after this many dispatches even without a readback, so the GPU starts early and
/// command buffers stay small.
const DISPATCHES_PER_SUBMIT: usize = 128;

/// Bytes of one dispatch's parameters in the uniform ring: the largest params struct fits, and
/// it is a multiple of every adapter's uniform offset alignment (at most 256 by the spec).
const PARAM_SLOT: usize = 256;

/// What a device has been asked to do since it was opened: the figures a GPU step is judged by
/// (how many dispatches and submissions, how much crosses the bus, whether memory is still
/// being allocated). Take two [`Gpu::stats`] and subtract to see one step's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Reads of an array back to the host (each waits for the device).
    pub readbacks: u64,
    pub bytes_uploaded: u64,
    pub bytes_read: u64,
    /// Array buffers created (the pool had none of the size), and their bytes.
    pub buffers_created: u64,
    pub bytes_created: u64,
    /// Other buffers made for one command: a dispatch's parameters, a readback's staging.
    pub transient_buffers: u64,
}

impl std::ops::Sub for GpuStats {
    type Output = GpuStats;
    fn sub(self, o: GpuStats) -> GpuStats {
        GpuStats {
            dispatches: self.dispatches - o.dispatches,
            submissions: self.submissions - o.submissions,
            readbacks: self.readbacks - o.readbacks,
            bytes_uploaded: self.bytes_uploaded - o.bytes_uploaded,
            bytes_read: self.bytes_read - o.bytes_read,
            buffers_created: self.buffers_created - o.buffers_created,
            bytes_created: self.bytes_created - o.bytes_created,
            transient_buffers: self.transient_buffers - o.transient_buffers,
        }
    }
}

/// The counters behind [`GpuStats`], one atomic each (kernels record from several threads).
#[derive(Default)]
struct Counters {
    dispatches: AtomicU64,
    submissions: AtomicU64,
    readbacks: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_read: AtomicU64,
    buffers_created: AtomicU64,
    transient_buffers: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// One opened adapter: device, queue, pool, caches.
pub struct Gpu {
    /// Index in [`adapters`]; also the `gpu:N` name of the device.
    pub id: usize,
    pub summary: AdapterSummary,
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// Bytes of every buffer ever created on this device (pooled buffers are never freed, so
    /// this is what the device holds for arrays, in use or pooled).
    created_bytes: std::sync::atomic::AtomicU64,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    pending: Mutex<Pending>,
    /// The uniform buffer every dispatch of a submission reads its parameters from, a slot
    /// each. One `queue.write_buffer` per submission fills it: the queue orders that write
    /// after every earlier submission and before this one, so no dispatch allocates anything.
    param_ring: wgpu::Buffer,
    /// Readback staging buffers kept for the next read of the same bucket size.
    staging: Mutex<HashMap<u64, wgpu::Buffer>>,
    texels: Mutex<Option<Texels>>,
    texels4: Mutex<Option<Texels>>,
    /// Timestamp queries of every dispatch while kernel timing is on (timing.rs).
    timing: Mutex<Option<KernelTiming>>,
    /// Set by the device-lost callback and by errors no scope caught; every later call fails.
    fatal: Arc<Mutex<Option<GpuError>>>,
    counters: Counters,
    /// The subgroup size when the device has subgroup operations and one fixed size.
    subgroup_size: Option<u32>,
    /// Whether launchers may pick the tuned kernels (see [`Gpu::set_tuned_kernels`]).
    tuned_kernels: std::sync::atomic::AtomicBool,
}

/// The kernels devices opened from now on start with: unset (then `SENET_GPU_KERNELS`), tuned
/// or plain ([`set_default_kernels`], from `senet --gpu-kernels`).
static DEFAULT_KERNELS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
const KERNELS_TUNED: u8 = 1;
const KERNELS_PLAIN: u8 = 2;

/// Makes devices opened from now on start with the tuned kernels (`true`) or the plain ones
/// (see [`Gpu::tuned_kernels`]), whatever `SENET_GPU_KERNELS` says.
pub fn set_default_kernels(tuned: bool) {
    let v = if tuned { KERNELS_TUNED } else { KERNELS_PLAIN };
    DEFAULT_KERNELS.store(v, Ordering::Relaxed);
}

/// The value of `SENET_GPU_KERNELS`: unset is `None`, `tuned` and `plain` choose, anything
/// else is an error naming the variable (a typo must not silently test the other kernels).
pub fn kernels_choice(value: Option<&str>) -> Result<Option<bool>> {
    match value {
        None => Ok(None),
        Some("tuned") => Ok(Some(true)),
        Some("plain") => Ok(Some(false)),
        Some(other) => Err(GpuError::Validation(format!(
            "SENET_GPU_KERNELS must be `tuned` or `plain`, got {other:?}"
        ))),
    }
}

/// The optional features used where the adapter has them: subgroup operations (the GEMM kernels'
/// fast path) and timestamp queries (per-kernel GPU time in `senet bench --profile`).
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SUBGROUP
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
}

/// Rounds a byte size up to a pool bucket: 8 buckets per power of two (at most 12.5% waste),
/// at least 256 bytes.
fn bucket(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let pow = 63 - bytes.leading_zeros() as u64; // floor(log2)
    let step = (1u64 << pow) / 8;
    bytes.div_ceil(step) * step
}

impl Gpu {
    /// Opens (once per process) the adapter `request` picks. `Ok(None)`: `Auto` found no
    /// hardware GPU, use the CPU backend.
    pub fn open(request: &DeviceRequest) -> Result<Option<Arc<Gpu>>> {
        match request.choose()? {
            Some(a) => Gpu::open_index(a.index).map(Some),
            None => Ok(None),
        }
    }

    /// The already opened (or newly opened) device of adapter `index`.
    pub fn open_index(index: usize) -> Result<Arc<Gpu>> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .expect("gpu registry lock");
        if let Some(g) = open.get(&index) {
            return Ok(g.clone());
        }
        let adapter = instance_and_adapters()
            .1
            .get(index)
            .ok_or_else(|| GpuError::NoAdapter(format!("there is no adapter number {index}")))?;
        let gpu = Arc::new(Gpu::create(index, adapter)?);
        open.insert(index, gpu.clone());
        Ok(gpu)
    }

    fn create(index: usize, adapter: &wgpu::Adapter) -> Result<Gpu> {
        let summary = summarize(index, adapter);
        // Ask for everything the adapter has: the defaults (e.g. 128 MiB per storage binding,
        // 8 storage buffers per stage) are lower than most real GPUs allow.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("senet"),
            required_features: adapter.features() & wanted_features(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::RequestDevice(format!("{summary}: {e}")))?;
        let fatal: Arc<Mutex<Option<GpuError>>> = Arc::new(Mutex::new(None));
        let f = fatal.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert(GpuError::DeviceLost(format!("{reason:?}: {msg}")));
        });
        let f = fatal.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert(classify(&e));
        }));
        let param_ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dispatch parameters"),
            size: (DISPATCHES_PER_SUBMIT * PARAM_SLOT) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let info = adapter.get_info();
        let subgroup_size = (device.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == info.subgroup_max_size)
            .then_some(info.subgroup_min_size);
        let tuned = match DEFAULT_KERNELS.load(Ordering::Relaxed) {
            KERNELS_TUNED => true,
            KERNELS_PLAIN => false,
            _ => {
                kernels_choice(std::env::var("SENET_GPU_KERNELS").ok().as_deref())?.unwrap_or(true)
            }
        };
        Ok(Gpu {
            id: index,
            summary,
            device,
            queue,
            limits,
            pool: Mutex::new(HashMap::new()),
            created_bytes: std::sync::atomic::AtomicU64::new(0),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending {
                encoder: None,
                dispatches: 0,
                params: Vec::with_capacity(DISPATCHES_PER_SUBMIT * PARAM_SLOT),
            }),
            param_ring,
            staging: Mutex::new(HashMap::new()),
            texels: Mutex::new(None),
            texels4: Mutex::new(None),
            timing: Mutex::new(None),
            fatal,
            counters: Counters::default(),
            subgroup_size,
            tuned_kernels: std::sync::atomic::AtomicBool::new(tuned),
        })
    }

    /// The number of threads in a subgroup, when the device has subgroup operations (requested
    /// whenever the adapter offers them) with one fixed size.
    pub fn subgroup_size(&self) -> Option<u32> {
        self.subgroup_size
    }

    /// Whether launchers may choose the kernels tuned for this adapter: the subgroup GEMM where
    /// subgroups are 8 wide, and 8-thread reduction workgroups on a CPU adapter. On by default;
    /// off when the process started with `SENET_GPU_KERNELS=plain` or `senet --gpu-kernels
    /// plain` ([`set_default_kernels`]), or after
    /// `set_tuned_kernels(false)`, so the plain kernels (written for any GPU) can be run and
    /// tested on every adapter.
    pub fn tuned_kernels(&self) -> bool {
        self.tuned_kernels.load(Ordering::Relaxed)
    }

    /// Allows (or forbids) the tuned kernels from now on; returns the previous setting.
    pub fn set_tuned_kernels(&self, on: bool) -> bool {
        self.tuned_kernels.swap(on, Ordering::Relaxed)
    }

    /// Threads of the workgroups that reduce with barriers (the `RWG` pipeline constant of
    /// `workgroup_reduce.wgsl`): 8 on a CPU adapter, where the threads of a workgroup run 8 at
    /// a time and each barrier switches between those groups, else 256.
    pub fn reduce_workgroup(&self) -> u32 {
        if self.tuned_kernels() && self.summary.device_type == "Cpu" {
            8
        } else {
            256
        }
    }

    /// What this device has done since it was opened (see [`GpuStats`]).
    pub fn stats(&self) -> GpuStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GpuStats {
            dispatches: get(&c.dispatches),
            submissions: get(&c.submissions),
            readbacks: get(&c.readbacks),
            bytes_uploaded: get(&c.bytes_uploaded),
            bytes_read: get(&c.bytes_read),
            buffers_created: get(&c.buffers_created),
            bytes_created: self.created_bytes.load(Ordering::Relaxed),
            transient_buffers: get(&c.transient_buffers),
        }
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Fails if the device was lost or an earlier error escaped every scope.
    fn check(&self) -> Result<()> {
        match self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and returns what they caught.
    fn scoped<R>(&self, what: &str, f: impl FnOnce() -> R) -> Result<R> {
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = o.or(v) {
            let e = classify(&e);
            return Err(match e {
                GpuError::OutOfMemory(m) => GpuError::OutOfMemory(format!("{what}: {m}")),
                GpuError::Validation(m) => GpuError::Validation(format!("{what}: {m}")),
                other => other,
            });
        }
        Ok(r)
    }

    fn release(&self, buffer: wgpu::Buffer) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.entry(buffer.size()).or_default().push(buffer);
        }
    }

    fn new_buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        if bytes > self.limits.max_buffer_size {
            return Err(GpuError::OutOfMemory(format!(
                "a buffer of {bytes} bytes is larger than the adapter's maximum of {} bytes",
                self.limits.max_buffer_size
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        self.created_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        bump(&self.counters.buffers_created, 1);
        self.scoped("allocating a buffer", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// `(bytes of every buffer created, bytes of those waiting in the pool)`: the first is what
    /// the device holds for arrays; a long run whose first figure keeps growing leaks.
    pub fn buffer_bytes(&self) -> (u64, u64) {
        let pooled = self.pool.lock().map_or(0, |p| {
            p.iter().map(|(size, list)| size * list.len() as u64).sum()
        });
        (
            self.created_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            pooled,
        )
    }

    /// An uninitialized array of `len` 4-byte elements (from the pool when possible).
    pub fn alloc(self: &Arc<Self>, len: usize) -> Result<GpuBuffer> {
        Ok(self.alloc_reporting_reuse(len)?.0)
    }

    /// [`Gpu::alloc`], and whether the memory came from the pool (so recorded commands of its
    /// previous owner may still be waiting to use it).
    fn alloc_reporting_reuse(self: &Arc<Self>, len: usize) -> Result<(GpuBuffer, bool)> {
        self.check()?;
        let bytes = bucket(len as u64 * 4);
        let reused = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&bytes).and_then(Vec::pop));
        let was_pooled = reused.is_some();
        let buffer = match reused {
            Some(b) => b,
            None => self.new_buffer(bytes)?,
        };
        let buf = GpuBuffer {
            buffer: Some(buffer),
            len,
            gpu: self.clone(),
        };
        Ok((buf, was_pooled))
    }

    /// An array of `len` zeros.
    pub fn zeros(self: &Arc<Self>, len: usize) -> Result<GpuBuffer> {
        let b = self.alloc(len)?;
        self.with_encoder(|enc| enc.clear_buffer(b.raw(), 0, None))?;
        Ok(b)
    }

    /// Copies `data` to a GPU array (from the pool when possible). `queue.write_buffer` runs
    /// before any command not yet submitted, so when the memory comes from the pool the
    /// recorded commands (which may still read it for its previous owner) are submitted first.
    pub fn upload<T: bytemuck::Pod>(self: &Arc<Self>, data: &[T]) -> Result<GpuBuffer> {
        assert_eq!(
            std::mem::size_of::<T>(),
            4,
            "GPU arrays hold 4-byte elements"
        );
        let (buf, was_pooled) = self.alloc_reporting_reuse(data.len())?;
        if !data.is_empty() {
            if was_pooled {
                self.flush()?;
            }
            self.queue
                .write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
            bump(&self.counters.bytes_uploaded, data.len() as u64 * 4);
        }
        Ok(buf)
    }

    /// Records into the open encoder (creating one if needed).
    /// Submits what is recorded, waits for it, and returns the first `bytes` of `staging` (a
    /// MAP_READ buffer the recorded commands copied into), leaving it unmapped.
    fn map_and_read<T: bytemuck::Pod>(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<T>> {
        self.flush()?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        // Poll from this (the submitting) thread: wgpu 30.0.2 races when another thread polls.
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(format!("{e}")))?;
        self.check()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Readback(format!("{e}"))),
            Err(_) => return Err(GpuError::Readback("the map callback never ran".into())),
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Readback(format!("{e:?}")))?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> Result<R> {
        self.check()?;
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let enc = p.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("senet"),
                })
        });
        Ok(f(enc))
    }

    /// Submits everything recorded so far (returns at once; the GPU runs it asynchronously).
    pub fn flush(&self) -> Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.dispatches = 0;
        if let Some(enc) = p.encoder.take() {
            bump(&self.counters.submissions, 1);
            if !p.params.is_empty() {
                self.queue.write_buffer(&self.param_ring, 0, &p.params);
            }
            self.queue.submit([enc.finish()]);
        }
        p.params.clear();
        drop(p);
        self.check()
    }

    /// Copies `src[src_offset..src_offset + len]` into `dst[dst_offset..]` (elements).
    pub fn copy(
        &self,
        src: &GpuBuffer,
        src_offset: usize,
        dst: &GpuBuffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        if src_offset + len > src.len || dst_offset + len > dst.len {
            return Err(GpuError::Validation(format!("copy of {len} elements from offset {src_offset} of {} into offset {dst_offset} of {}", src.len, dst.len)));
        }
        if len == 0 {
            return Ok(());
        }
        self.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(
                src.raw(),
                src_offset as u64 * 4,
                dst.raw(),
                dst_offset as u64 * 4,
                len as u64 * 4,
            )
        })
    }

    /// Waits for the GPU and returns the elements of `buf` (the only call that blocks).
    pub fn read<T: bytemuck::Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>> {
        assert_eq!(
            std::mem::size_of::<T>(),
            4,
            "GPU arrays hold 4-byte elements"
        );
        if buf.len == 0 {
            return Ok(Vec::new());
        }
        let bytes = buf.byte_len();
        bump(&self.counters.readbacks, 1);
        bump(&self.counters.bytes_read, buf.len as u64 * 4);
        let size = bucket(bytes);
        let kept = self
            .staging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&size);
        let staging = match kept {
            Some(s) => s,
            None => {
                bump(&self.counters.transient_buffers, 1);
                self.scoped("allocating a readback buffer", || {
                    self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("readback"),
                        size,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })?
            }
        };
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(buf.raw(), 0, &staging, 0, bytes))?;
        let out = self.map_and_read::<T>(&staging, buf.len as u64 * 4)?;
        self.staging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(size, staging);
        Ok(out)
    }

    /// Blocks until all submitted work has finished (for benchmarks).
    pub fn synchronize(&self) -> Result<()> {
        self.flush()?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(format!("{e}")))?;
        self.check()
    }

    fn pipeline(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = format!("{}:{entry}:{constants:?}", shader.name);
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match modules.get(shader.name) {
                Some(m) => m.clone(),
                None => {
                    let m = self.scoped(&format!("compiling shader {}", shader.name), || {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(shader.name),
                                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                            })
                    })?;
                    modules.insert(shader.name, m.clone());
                    m
                }
            }
        };
        let pipeline = self.scoped(
            &format!("creating pipeline {}::{entry}", shader.name),
            || {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            zero_initialize_workgroup_memory: true,
                        },
                        cache: None,
                    })
            },
        )?;
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Workgroup counts for `n` workgroups along one logical axis, folded into (x, y) when `n`
    /// exceeds the per-dimension limit. Kernels recover the index as
    /// `wid.x + wid.y * num_workgroups.x`.
    pub fn grid_1d(&self, n: usize) -> [u32; 3] {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        if n <= max {
            [n.max(1) as u32, 1, 1]
        } else {
            [max as u32, n.div_ceil(max) as u32, 1]
        }
    }

    /// Appends one dispatch of `shader::entry` to the open encoder. `params` fills the uniform
    /// at binding 0 (skipped when empty); `buffers` are (binding, buffer) pairs.
    pub fn dispatch(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u8],
        buffers: &[(u32, &GpuBuffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_reading_texels(shader, entry, constants, params, buffers, None, groups)
    }

    /// Whether [`Gpu::dispatch_reading_texels`] can read an array of `len` elements: its
    /// texture (`TEXEL_ROW` wide, a row per `TEXEL_ROW` elements) fits the adapter.
    pub fn texels_fit(&self, len: usize) -> bool {
        let max = self.limits.max_texture_dimension_2d as usize;
        TEXEL_ROW <= max && len.div_ceil(TEXEL_ROW) <= max
    }

    /// [`Gpu::dispatch`] where the shader also reads `texels` through the read-only
    /// `r32float` storage texture at binding `TEXELS_BINDING`: element `i` at texel
    /// `(i % TEXEL_ROW, i / TEXEL_ROW)`. The buffer is copied into the texture just before the
    /// dispatch. Why: on a CPU adapter (lavapipe) a storage-buffer load is a loop over the SIMD
    /// lanes, one element at a time through memory, while a texel load is a few vector
    /// instructions, so the subgroup GEMM reads the operand whose elements differ in every lane
    /// this way.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_reading_texels(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u8],
        buffers: &[(u32, &GpuBuffer)],
        texels: Option<&GpuBuffer>,
        groups: [u32; 3],
    ) -> Result<()> {
        let arrays: Vec<&GpuBuffer> = texels.into_iter().collect();
        let kind = texels.map(|_| TexelKind::One);
        self.dispatch_with(
            shader, entry, constants, params, buffers, kind, &arrays, groups,
        )
    }

    /// Rows of `TEXEL_ROW` elements an array of `len` elements takes in a texel texture.
    /// [`Gpu::dispatch_reading_vec4_texels`] stacks its arrays by rows: array `j` starts at
    /// element `TEXEL_ROW *` (the rows of the arrays before it).
    pub fn texel_rows(len: usize) -> usize {
        len.div_ceil(TEXEL_ROW)
    }

    /// Whether [`Gpu::dispatch_reading_vec4_texels`] can read arrays of these lengths.
    pub fn vec4_texels_fit(&self, lens: &[usize]) -> bool {
        let rows: usize = lens.iter().map(|&l| Gpu::texel_rows(l)).sum();
        rows <= self.limits.max_texture_dimension_2d as usize
    }

    /// [`Gpu::dispatch`] where the shader also reads `arrays` through the read-only
    /// `rgba32float` storage texture at binding `TEXELS4_BINDING`, stacked by rows (see
    /// [`Gpu::texel_rows`]): element `i` of the stack is component `i % 4` of texel
    /// `(i / 4 % (TEXEL_ROW / 4), i / TEXEL_ROW)`.
    /// One fetch reads four consecutive elements, so a kernel that wants runs of four (a GEMM
    /// reading four K positions of A, or four columns of B) makes a quarter of the fetches of
    /// [`Gpu::dispatch_reading_texels`]. Elements past an array's end may hold anything.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_reading_vec4_texels(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u8],
        buffers: &[(u32, &GpuBuffer)],
        arrays: &[&GpuBuffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let kind = Some(TexelKind::Four);
        self.dispatch_with(
            shader, entry, constants, params, buffers, kind, arrays, groups,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_with(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u8],
        buffers: &[(u32, &GpuBuffer)],
        kind: Option<TexelKind>,
        arrays: &[&GpuBuffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(GpuError::Validation(format!(
                "{}::{entry}: {groups:?} workgroups exceed the limit of {max} per dimension",
                shader.name
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        if params.len() > PARAM_SLOT {
            return Err(GpuError::Validation(format!(
                "{}::{entry}: {} bytes of parameters, more than the {PARAM_SLOT} a dispatch has",
                shader.name,
                params.len()
            )));
        }
        let pipeline = self.pipeline(shader, entry, constants)?;
        let number = self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        let timed = self.timing_slot(number)?;
        let what = format!("dispatching {}::{entry}", shader.name);
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries: Vec<wgpu::BindGroupEntry> = Vec::with_capacity(buffers.len() + 1);
        if !params.is_empty() {
            // This dispatch's slot of the ring, filled when the commands are submitted.
            let offset = p.params.len();
            p.params.extend_from_slice(params);
            p.params.resize(offset + PARAM_SLOT, 0);
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.param_ring,
                    offset: offset as u64,
                    size: wgpu::BufferSize::new((params.len() as u64).div_ceil(16) * 16),
                }),
            });
        }
        for (binding, b) in buffers {
            let size = wgpu::BufferSize::new(b.byte_len());
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.raw(),
                    offset: 0,
                    size,
                }),
            });
        }
        let rows: usize = arrays.iter().map(|b| Gpu::texel_rows(b.len())).sum();
        let texture = match kind {
            Some(kind) => Some(self.texels_for(kind, rows, shader.name, entry)?),
            None => None,
        };
        let texture = texture
            .as_ref()
            .map(|t| t.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(t) = texture.as_ref().and_then(|t| t.as_ref()) {
            entries.push(wgpu::BindGroupEntry {
                binding: match kind {
                    Some(TexelKind::Four) => TEXELS4_BINDING,
                    _ => TEXELS_BINDING,
                },
                resource: wgpu::BindingResource::TextureView(&t.view),
            });
        }
        let texture = texture.as_ref().and_then(|t| t.as_ref());
        // Counted before recording, so a failed dispatch's slot is never handed out twice.
        p.dispatches += 1;
        let recorded = self.scoped(&what, || {
            let layout = pipeline.get_bind_group_layout(0);
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &layout,
                entries: &entries,
            });
            let enc = p.encoder.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("senet"),
                    })
            });
            if let (Some(kind), Some(t)) = (kind, texture.as_ref()) {
                let mut row = 0;
                for b in arrays {
                    copy_into_texels(enc, kind, b, row, &t.texture);
                    row += Gpu::texel_rows(b.len());
                }
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: timed.as_ref().map(|(queries, slot)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: queries,
                        beginning_of_pass_write_index: Some(2 * slot),
                        end_of_pass_write_index: Some(2 * slot + 1),
                    }
                }),
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        let submit = p.dispatches >= DISPATCHES_PER_SUBMIT;
        drop(p);
        recorded?;
        if submit {
            self.flush()?;
        }
        Ok(())
    }
}

impl Gpu {
    /// The texel texture, grown (a new texture; dispatches recorded earlier keep the old one
    /// alive) when an array of `len` elements needs more rows than it has.
    fn texels_for(
        &self,
        kind: TexelKind,
        rows: usize,
        shader: &str,
        entry: &str,
    ) -> Result<&Mutex<Option<Texels>>> {
        let max = self.limits.max_texture_dimension_2d;
        if TEXEL_ROW > max as usize || rows > max as usize {
            return Err(GpuError::Validation(format!(
                "{shader}::{entry}: {rows} rows of {TEXEL_ROW} elements do not fit a texture \
                 on {} (at most {max} texels a side)",
                self.summary
            )));
        }
        let rows = rows.max(1) as u32;
        let cell = match kind {
            TexelKind::One => &self.texels,
            TexelKind::Four => &self.texels4,
        };
        let mut t = cell.lock().unwrap_or_else(|e| e.into_inner());
        let have = t.as_ref().map_or(0, |t| t.rows);
        if rows > have {
            // Room to grow by an eighth, so a run of slightly larger arrays makes one texture.
            let max = self.limits.max_texture_dimension_2d;
            let rows = (rows + rows / 8).min(max);
            let texture = self.scoped("creating the texel texture", || {
                self.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("texels"),
                    size: wgpu::Extent3d {
                        width: (TEXEL_ROW / kind.elements_per_texel()) as u32,
                        height: rows,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: match kind {
                        TexelKind::One => wgpu::TextureFormat::R32Float,
                        TexelKind::Four => wgpu::TextureFormat::Rgba32Float,
                    },
                    usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                })
            })?;
            let bytes = |rows: u32| rows as u64 * TEXEL_ROW as u64 * 4;
            self.created_bytes.fetch_add(bytes(rows), Ordering::Relaxed);
            self.created_bytes.fetch_sub(bytes(have), Ordering::Relaxed);
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            *t = Some(Texels {
                texture,
                view,
                rows,
            });
        }
        Ok(cell)
    }
}

/// Records the copy of `b` into a texel texture from row `at` on: its whole rows, then the
/// partial last row. A four-channel texture gets the partial last texel whole: buffers are
/// allocated in multiples of 32 bytes ([`bucket`]), so those bytes exist.
fn copy_into_texels(
    enc: &mut wgpu::CommandEncoder,
    kind: TexelKind,
    b: &GpuBuffer,
    at: usize,
    texture: &wgpu::Texture,
) {
    let (full, rest) = (b.len() / TEXEL_ROW, b.len() % TEXEL_ROW);
    let per = kind.elements_per_texel();
    let mut copy = |first_row: usize, rows: usize, width: usize| {
        let width = width.div_ceil(per);
        if rows == 0 || width == 0 {
            return;
        }
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: b.raw(),
                layout: wgpu::TexelCopyBufferLayout {
                    offset: (first_row * TEXEL_ROW * 4) as u64,
                    bytes_per_row: Some((TEXEL_ROW * 4) as u32),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: (at + first_row) as u32,
                    z: 0,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: width as u32,
                height: rows as u32,
                depth_or_array_layers: 1,
            },
        );
    };
    copy(0, full, TEXEL_ROW);
    copy(full, 1, rest);
}

// ---- kernel timing ----------------------------------------------------------------------
//
// Per-dispatch GPU time from timestamp queries, for `senet bench --profile`.
//
// While `Gpu::set_kernel_timing` is on (and the device has `Features::TIMESTAMP_QUERY`),
// every dispatch's compute pass writes a timestamp at its start and end into a query set. When
// the set is full, or when `Gpu::take_kernel_times` is called, the recorded pairs are
// resolved into a buffer, read back and turned into seconds per dispatch number (the
// `GpuStats::dispatches` count before the dispatch). No wait per kernel: the times are
// the device's own, so a profiled step runs as fast as an unprofiled one.

/// Dispatches timed per query set: each writes two timestamps, and wgpu caps a set at 4096.
const TIMING_SLOTS: u32 = 2048;

struct KernelTiming {
    queries: wgpu::QuerySet,
    /// Where the queries are resolved (QUERY_RESOLVE), then copied to `readback`.
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// The dispatch number of each slot written since the last collection, in slot order.
    slots: Vec<u64>,
    /// Collected (dispatch number, seconds).
    done: Vec<(u64, f64)>,
}

impl Gpu {
    /// Whether the device can time kernels with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Starts (true) or stops timing every dispatch with timestamp queries; returns whether
    /// timing is on. Starting discards earlier times; without timestamp queries it stays off.
    pub fn set_kernel_timing(&self, on: bool) -> Result<bool> {
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        if !on || !self.has_timestamps() {
            *t = None;
            return Ok(false);
        }
        let bytes = u64::from(TIMING_SLOTS) * 16;
        let device = &self.device;
        let made = self.scoped("creating the timestamp queries", || {
            let buffer = |label, usage| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            KernelTiming {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * TIMING_SLOTS,
                }),
                resolve: buffer(
                    "timestamp resolve",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                readback: buffer(
                    "timestamp readback",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
                slots: Vec::new(),
                done: Vec::new(),
            }
        })?;
        *t = Some(made);
        Ok(true)
    }

    /// Whether dispatches are being timed.
    pub fn kernel_timing(&self) -> bool {
        self.timing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Waits for the device and returns (dispatch number, seconds on the device) of every
    /// dispatch timed since timing started or the last call, in dispatch order.
    pub fn take_kernel_times(&self) -> Result<Vec<(u64, f64)>> {
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = t.as_mut() else {
            return Ok(Vec::new());
        };
        self.collect(t)?;
        Ok(std::mem::take(&mut t.done))
    }

    /// The query-set slot pair of dispatch `number` and the set, when timing is on (collecting
    /// the full set first). Called before the dispatch takes the pending-commands lock.
    fn timing_slot(&self, number: u64) -> Result<Option<(wgpu::QuerySet, u32)>> {
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = t.as_mut() else {
            return Ok(None);
        };
        if t.slots.len() == TIMING_SLOTS as usize {
            self.collect(t)?;
        }
        t.slots.push(number);
        Ok(Some((t.queries.clone(), t.slots.len() as u32 - 1)))
    }

    /// Resolves and reads back the written slots.
    fn collect(&self, t: &mut KernelTiming) -> Result<()> {
        let n = t.slots.len() as u32;
        if n == 0 {
            return Ok(());
        }
        let bytes = u64::from(n) * 16;
        self.with_encoder(|enc| {
            enc.resolve_query_set(&t.queries, 0..2 * n, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, bytes);
        })?;
        let ticks: Vec<u64> = self.map_and_read(&t.readback, bytes)?;
        let period = f64::from(self.queue.get_timestamp_period()) * 1e-9;
        for (i, &number) in t.slots.iter().enumerate() {
            let (begin, end) = (ticks[2 * i], ticks[2 * i + 1]);
            t.done
                .push((number, end.saturating_sub(begin) as f64 * period));
        }
        t.slots.clear();
        Ok(())
    }
}

fn classify(e: &wgpu::Error) -> GpuError {
    match e {
        wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
        _ => GpuError::Validation(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;

    #[test]
    fn a_shader_that_fails_validation_is_an_error_naming_it() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let bad = Shader {
            name: "broken",
            source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
        };
        let x = gpu.zeros(4).unwrap();
        let err = gpu
            .dispatch(&bad, "main", &[], &[], &[(1, &x)], [1, 1, 1])
            .unwrap_err();
        assert!(matches!(err, GpuError::Validation(_)), "{err}");
        assert!(err.to_string().contains("broken"), "{err}");
        // The device is still usable.
        assert_eq!(
            gpu.read::<f32>(&gpu.upload(&[1.0f32, 2.0]).unwrap())
                .unwrap(),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn dispatches_read_buffers_through_the_texel_texture() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let copy = Shader {
            name: "texel_copy",
            source: "@group(0) @binding(7) var texels: texture_storage_2d<r32float, read>;
                @group(0) @binding(1) var<storage, read_write> out: array<f32>;
                @compute @workgroup_size(64)
                fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                    let i = id.x + id.y * 64u * 65535u;
                    if (i < arrayLength(&out)) {
                        out[i] = textureLoad(texels, vec2<u32>(i % 4096u, i / 4096u)).x;
                    }
                }",
        };
        // Whole rows and a partial one; a longer array (the texture grows) and a shorter one
        // again, recorded in one submission: each dispatch must see its own copy.
        let lens = [2 * TEXEL_ROW + 5, 3 * TEXEL_ROW + 1, 7, TEXEL_ROW];
        let mut outs = Vec::new();
        for (n, &len) in lens.iter().enumerate() {
            let v: Vec<f32> = (0..len).map(|i| (i * 10 + n) as f32).collect();
            let input = gpu.upload(&v).unwrap();
            let out = gpu.zeros(len).unwrap();
            let grid = gpu.grid_1d(len.div_ceil(64));
            gpu.dispatch_reading_texels(&copy, "main", &[], &[], &[(1, &out)], Some(&input), grid)
                .unwrap();
            outs.push((v, out));
        }
        for (v, out) in outs {
            assert_eq!(gpu.read::<f32>(&out).unwrap(), v);
        }
        let max = gpu.limits().max_texture_dimension_2d as usize;
        assert!(gpu.texels_fit(max * TEXEL_ROW));
        assert!(!gpu.texels_fit(max * TEXEL_ROW + 1));
        let huge = max * TEXEL_ROW + 1;
        let err = gpu
            .texels_for(TexelKind::One, Gpu::texel_rows(huge), "s", "e")
            .err()
            .expect("too long for the texture");
        assert!(err.to_string().contains("do not fit"), "{err}");
    }

    #[test]
    fn dispatches_read_stacked_arrays_four_elements_per_texel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        // out[i] = element i of the stack: component i % 4 of texel i / 4.
        let copy = Shader {
            name: "texel4_copy",
            source: "@group(0) @binding(8) var texels: texture_storage_2d<rgba32float, read>;
                @group(0) @binding(1) var<storage, read_write> out: array<f32>;
                @compute @workgroup_size(64)
                fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                    let i = id.x + id.y * 64u * 65535u;
                    if (i < arrayLength(&out)) {
                        let t = i / 4u;
                        out[i] = textureLoad(texels, vec2<u32>(t % 1024u, t / 1024u))[i % 4u];
                    }
                }",
        };
        // Two arrays, the first a row and a partial texel long (7 = one texel and three
        // elements of the next), the second starting on the next row; then one longer array
        // in the same submission.
        let first: Vec<f32> = (0..TEXEL_ROW + 7).map(|i| i as f32).collect();
        let second: Vec<f32> = (0..10).map(|i| -(i as f32) - 1.0).collect();
        let third: Vec<f32> = (0..3 * TEXEL_ROW + 2).map(|i| 0.5 * i as f32).collect();
        let (a, b, c) = (
            gpu.upload(&first).unwrap(),
            gpu.upload(&second).unwrap(),
            gpu.upload(&third).unwrap(),
        );
        let stack_len = 2 * TEXEL_ROW + second.len();
        let out = gpu.zeros(stack_len).unwrap();
        let grid = gpu.grid_1d(stack_len.div_ceil(64));
        gpu.dispatch_reading_vec4_texels(&copy, "main", &[], &[], &[(1, &out)], &[&a, &b], grid)
            .unwrap();
        let out3 = gpu.zeros(third.len()).unwrap();
        let grid = gpu.grid_1d(third.len().div_ceil(64));
        gpu.dispatch_reading_vec4_texels(&copy, "main", &[], &[], &[(1, &out3)], &[&c], grid)
            .unwrap();
        let got: Vec<f32> = gpu.read(&out).unwrap();
        assert_eq!(Gpu::texel_rows(first.len()), 2);
        assert_eq!(&got[..first.len()], &first[..]);
        assert_eq!(&got[2 * TEXEL_ROW..], &second[..]);
        assert_eq!(gpu.read::<f32>(&out3).unwrap(), third);
        let max = gpu.limits().max_texture_dimension_2d as usize;
        assert!(gpu.vec4_texels_fit(&[max * TEXEL_ROW]));
        assert!(!gpu.vec4_texels_fit(&[(max - 1) * TEXEL_ROW, 1 + TEXEL_ROW]));
    }

    #[test]
    fn timestamp_queries_time_each_dispatch_past_a_full_query_set() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            assert!(gpu.has_timestamps(), "lavapipe offers timestamp queries");
        }
        if !gpu.set_kernel_timing(true).unwrap() {
            eprintln!("skipped: {} has no timestamp queries", gpu.summary);
            return;
        }
        let first = gpu.stats().dispatches;
        // More dispatches than one query set holds: the full set is collected on the way.
        let n = 2100;
        for _ in 0..n {
            crate::elementwise::fill(&gpu, 64, 1.0).unwrap();
        }
        let times = gpu.take_kernel_times().unwrap();
        let numbers: Vec<u64> = times.iter().map(|&(d, _)| d).collect();
        assert_eq!(numbers, (first..first + n).collect::<Vec<_>>());
        assert!(times.iter().all(|&(_, s)| (0.0..1.0).contains(&s)));
        assert!(times.iter().any(|&(_, s)| s > 0.0));
        assert!(gpu.take_kernel_times().unwrap().is_empty(), "taken once");
        assert!(!gpu.set_kernel_timing(false).unwrap());
        crate::elementwise::fill(&gpu, 64, 1.0).unwrap();
        assert!(gpu.take_kernel_times().unwrap().is_empty(), "timing is off");
    }

    #[test]
    fn the_kernels_variable_accepts_two_words_and_names_itself_otherwise() {
        assert_eq!(kernels_choice(None).unwrap(), None);
        assert_eq!(kernels_choice(Some("tuned")).unwrap(), Some(true));
        assert_eq!(kernels_choice(Some("plain")).unwrap(), Some(false));
        for bad in ["Plain", "", "fast"] {
            let err = kernels_choice(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("SENET_GPU_KERNELS"), "{err}");
        }
    }

    #[test]
    fn an_allocation_beyond_the_limits_is_an_error() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let err = gpu.alloc(usize::MAX / 8).unwrap_err();
        assert!(matches!(err, GpuError::OutOfMemory(_)), "{err}");
    }

    #[test]
    fn pooled_buffers_are_reused_and_copies_are_ordered() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let a = gpu.upload(&[1.0f32, 2.0, 3.0]).unwrap();
        let b = gpu.zeros(3).unwrap();
        gpu.copy(&a, 1, &b, 0, 2).unwrap();
        drop(a);
        // Reuses a's memory; the copy recorded before must still have read the old contents.
        let c = gpu.zeros(3).unwrap();
        assert_eq!(gpu.read::<f32>(&b).unwrap(), vec![2.0, 3.0, 0.0]);
        assert_eq!(gpu.read::<f32>(&c).unwrap(), vec![0.0; 3]);
        assert!(gpu.copy(&b, 2, &c, 0, 5).is_err());
    }

    #[test]
    fn stats_count_what_the_device_was_asked() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        gpu.flush().unwrap();
        let before = gpu.stats();
        let a = gpu.upload(&[1.0f32, 2.0, 3.0]).unwrap();
        let b = gpu.zeros(3).unwrap();
        gpu.copy(&a, 0, &b, 0, 3).unwrap();
        assert_eq!(gpu.read::<f32>(&b).unwrap(), vec![1.0, 2.0, 3.0]);
        let d = gpu.stats() - before;
        assert_eq!(
            (d.bytes_uploaded, d.readbacks, d.bytes_read, d.dispatches),
            (12, 1, 12, 0),
            "{d:?}"
        );
        // The zeros and the copy go in one submission; an upload into pooled memory may submit
        // what was recorded before it.
        assert!((1..=2).contains(&d.submissions), "{d:?}");
        assert!(d.buffers_created <= 2, "{d:?}");
        assert!(
            d.transient_buffers <= 1,
            "at most the readback's staging: {d:?}"
        );
        // Dropped arrays go back to the pool and staging buffers are kept: the same sizes again
        // create nothing, and dispatches with parameters allocate nothing either.
        drop((a, b));
        let before = gpu.stats();
        let c = gpu.upload(&[4.0f32, 5.0, 6.0]).unwrap();
        let mut last = None;
        for v in 1..=3 {
            last = Some(crate::elementwise::fill(&gpu, 3, v as f32).unwrap());
        }
        assert_eq!(gpu.read::<f32>(&last.unwrap()).unwrap(), vec![3.0; 3]);
        assert_eq!(gpu.read::<f32>(&c).unwrap(), vec![4.0, 5.0, 6.0]);
        let d = gpu.stats() - before;
        assert_eq!((d.buffers_created, d.transient_buffers), (0, 0), "{d:?}");
        assert_eq!(d.dispatches, 3, "{d:?}");
    }

    #[test]
    fn buckets_round_up_by_at_most_an_eighth() {
        assert_eq!(bucket(1), 256);
        assert_eq!(bucket(256), 256);
        assert_eq!(bucket(257), 288);
        assert_eq!(bucket(1 << 20), 1 << 20);
        for b in [300u64, 5000, 123_456, 10_000_019] {
            let r = bucket(b);
            assert!(r >= b && r <= b + b / 8 + 1, "{b} -> {r}");
        }
    }
}
