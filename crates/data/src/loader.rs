//! The batch loader: a seeded epoch permutation cut into batches, each augmented and normalized
//! by background workers a few batches ahead of the consumer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::augment::{normalize, normalize_table, Augmentation};
use crate::error::{Error, Result};
use crate::{Dataset, Split};

/// How to cut one epoch into batches.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// Images per batch (at least 1).
    pub batch: usize,
    /// Visit images in a permutation seeded by `(seed, epoch)`; otherwise in file order.
    pub shuffle: bool,
    /// Random crop (4-pixel black padding) and horizontal flip; normalization happens either way.
    pub augment: bool,
    /// Seed of the permutation and of the augmentation. (Streams come from `rand`'s `StdRng`,
    /// whose algorithm `Cargo.lock` pins: a resumed run must use the same build.)
    pub seed: u64,
    /// Epoch number: with `seed`, it fixes this epoch's permutation and augmentation.
    pub epoch: u64,
    /// Leave out the last batch when it is smaller than `batch`.
    pub drop_last: bool,
    /// Background threads preparing batches; 0 prepares each batch in `next()` itself.
    /// The batches are the same whatever this is.
    pub workers: usize,
    /// Finished batches each worker may hold before it waits for the consumer.
    pub prefetch: usize,
    /// Per-channel mean subtracted from `pixel / 255`.
    pub mean: [f32; 3],
    /// Per-channel std dividing `pixel / 255 - mean`.
    pub std: [f32; 3],
    /// Start the epoch at this batch index (to resume mid-epoch); batches keep their indices.
    pub skip: usize,
}

impl Default for LoaderOptions {
    /// Training settings with identity normalization; prefer [`LoaderOptions::train`].
    fn default() -> Self {
        Self {
            batch: 128,
            shuffle: true,
            augment: true,
            seed: 0,
            epoch: 0,
            drop_last: true,
            workers: 2,
            prefetch: 2,
            mean: [0.0; 3],
            std: [1.0; 3],
            skip: 0,
        }
    }
}

impl LoaderOptions {
    /// Training: shuffled, augmented, last partial batch dropped, the dataset's statistics.
    pub fn train(dataset: &Dataset, batch: usize, seed: u64, epoch: u64) -> Self {
        Self {
            batch,
            seed,
            epoch,
            mean: dataset.mean,
            std: dataset.std,
            ..Self::default()
        }
    }

    /// Evaluation: file order, no augmentation, every image (last batch may be smaller).
    pub fn test(dataset: &Dataset, batch: usize) -> Self {
        Self {
            batch,
            shuffle: false,
            augment: false,
            drop_last: false,
            mean: dataset.mean,
            std: dataset.std,
            ..Self::default()
        }
    }
}

/// One batch of normalized images.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `f32 [len, 3, H, W]`, `(pixel / 255 - mean) / std` per channel.
    pub images: Vec<f32>,
    /// `len` labels.
    pub labels: Vec<u32>,
    /// Images in this batch (`batch`, or fewer for a last partial batch).
    pub len: usize,
    /// Position of this batch in the epoch (counting skipped batches).
    pub index: usize,
}

/// Everything a worker needs to build any batch of the epoch.
struct Plan {
    split: Arc<Split>,
    order: Vec<u32>,
    opts: LoaderOptions,
    table: [[f32; 256]; 3],
}

impl Plan {
    fn batch(&self, index: usize) -> Batch {
        let start = index * self.opts.batch;
        let ids = &self.order[start..(start + self.opts.batch).min(self.order.len())];
        let size = self.split.image_size;
        let per_image = self.split.image_bytes();
        let mut images = vec![0f32; ids.len() * per_image];
        let mut labels = Vec::with_capacity(ids.len());
        // Seeded per batch, so a batch is the same whichever thread builds it and whenever.
        let mut rng =
            StdRng::seed_from_u64(mix(&[self.opts.seed, self.opts.epoch, index as u64, 1]));
        let mut scratch = vec![0u8; per_image];
        for (&id, out) in ids.iter().zip(images.chunks_exact_mut(per_image.max(1))) {
            let img = self.split.image(id as usize);
            let pixels = if self.opts.augment {
                Augmentation::random(&mut rng).apply(img, size, &mut scratch);
                &scratch
            } else {
                img
            };
            normalize(pixels, &self.table, out);
            labels.push(self.split.labels[id as usize]);
        }
        Batch {
            images,
            labels,
            len: ids.len(),
            index,
        }
    }
}

/// SplitMix64 over a sequence of words: nearby seeds, epochs and batch indices give unrelated
/// streams.
fn mix(words: &[u64]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for &w in words {
        h ^= w;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h = z ^ (z >> 31);
    }
    h
}

/// Iterates the batches of one epoch; see [`LoaderOptions`].
///
/// Dropping it early stops and joins its workers.
pub struct BatchLoader {
    plan: Arc<Plan>,
    next: usize,
    end: usize,
    receivers: Vec<Receiver<Batch>>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl BatchLoader {
    /// Plans the epoch and starts the workers.
    pub fn new(split: &Arc<Split>, opts: LoaderOptions) -> Result<Self> {
        split.validate()?;
        if opts.batch == 0 {
            return Err(Error::Options("batch size must be at least 1".into()));
        }
        if let Some(c) = (0..3).find(|&c| !(opts.std[c].is_finite() && opts.std[c] > 0.0)) {
            return Err(Error::Options(format!(
                "std[{c}] = {} must be a positive number",
                opts.std[c]
            )));
        }
        if let Some(c) = (0..3).find(|&c| !opts.mean[c].is_finite()) {
            return Err(Error::Options(format!(
                "mean[{c}] = {} is not finite",
                opts.mean[c]
            )));
        }
        let len = split.len;
        if u32::try_from(len).is_err() {
            return Err(Error::Options(format!(
                "{len} images is too many for one split"
            )));
        }
        let end = if opts.drop_last {
            len / opts.batch
        } else {
            len.div_ceil(opts.batch)
        };
        if opts.skip > end {
            return Err(Error::Options(format!(
                "skip {} is past the {end} batches of this epoch",
                opts.skip
            )));
        }
        let mut order: Vec<u32> = (0..len as u32).collect();
        if opts.shuffle {
            order.shuffle(&mut StdRng::seed_from_u64(mix(&[opts.seed, opts.epoch, 0])));
        }
        let plan = Arc::new(Plan {
            split: split.clone(),
            order,
            table: normalize_table(&opts.mean, &opts.std),
            opts,
        });

        let start = plan.opts.skip;
        let count = plan.opts.workers.min(end - start);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(count);
        let mut workers = Vec::with_capacity(count);
        for w in 0..count {
            // Worker w builds batches start + w, start + w + count, ...; the consumer reads the
            // workers' channels in turn, so batches arrive in order.
            let (tx, rx) = sync_channel(plan.opts.prefetch);
            let (plan, stop) = (plan.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("senet-data-{w}"))
                .spawn(move || {
                    for index in (start + w..end).step_by(count) {
                        if stop.load(Ordering::Relaxed) || tx.send(plan.batch(index)).is_err() {
                            return; // the loader was dropped
                        }
                    }
                })
                .map_err(|e| Error::Options(format!("cannot start a loader thread: {e}")))?;
            receivers.push(rx);
            workers.push(handle);
        }
        Ok(Self {
            plan,
            next: start,
            end,
            receivers,
            workers,
            stop,
        })
    }

    /// Batches in the whole epoch, skipped ones included.
    pub fn num_batches(&self) -> usize {
        self.end
    }

    /// The epoch's image order (indices into the split).
    pub fn order(&self) -> &[u32] {
        &self.plan.order
    }
}

impl Iterator for BatchLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            return None;
        }
        let index = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(self.plan.batch(index));
        }
        let w = (index - self.plan.opts.skip) % self.receivers.len();
        match self.receivers[w].recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // A worker only hangs up early by panicking (a bug, not bad data): pass it on.
                let handle = self.workers.remove(w);
                match handle.join() {
                    Err(payload) => std::panic::resume_unwind(payload),
                    Ok(()) => panic!("data loader worker {w} ended before batch {index}"),
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for BatchLoader {}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers makes a worker blocked in `send` return at once.
        self.receivers.clear();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}
