//! The batch loader: determinism, order, drop_last, skip, early stop, option checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use senet_data::{Batch, BatchLoader, Error, LoaderOptions, Split};

/// `n` random images of `size` x `size`; label i = i, so labels reveal the order.
fn split(n: usize, size: usize) -> Arc<Split> {
    let mut rng = StdRng::seed_from_u64(9);
    Arc::new(Split {
        images: (0..n * 3 * size * size).map(|_| rng.random()).collect(),
        labels: (0..n as u32).collect(),
        len: n,
        image_size: size,
    })
}

fn opts(batch: usize, workers: usize) -> LoaderOptions {
    LoaderOptions {
        batch,
        workers,
        seed: 7,
        epoch: 3,
        mean: [0.5, 0.4, 0.3],
        std: [0.2, 0.25, 0.3],
        ..LoaderOptions::default()
    }
}

fn all(split: &Arc<Split>, o: LoaderOptions) -> Vec<Batch> {
    BatchLoader::new(split, o).unwrap().collect()
}

fn labels(batches: &[Batch]) -> Vec<u32> {
    batches.iter().flat_map(|b| b.labels.clone()).collect()
}

#[test]
fn same_batches_whatever_the_number_of_workers() {
    let data = split(37, 8);
    let reference = all(&data, opts(5, 0));
    assert_eq!(reference.len(), 7); // 37 / 5, last partial batch dropped
    for workers in [1, 2, 3, 8, 16] {
        for prefetch in [0, 1, 4] {
            let o = LoaderOptions {
                prefetch,
                ..opts(5, workers)
            };
            assert_eq!(
                all(&data, o),
                reference,
                "{workers} workers, prefetch {prefetch}"
            );
        }
    }
    for (i, b) in reference.iter().enumerate() {
        assert_eq!((b.index, b.len, b.labels.len()), (i, 5, 5));
        assert_eq!(b.images.len(), 5 * 3 * 8 * 8);
    }
}

#[test]
fn file_order_without_shuffle_and_a_seeded_permutation_with_it() {
    let data = split(23, 4);
    let plain = LoaderOptions {
        shuffle: false,
        drop_last: false,
        ..opts(4, 2)
    };
    let batches = all(&data, plain.clone());
    assert_eq!(labels(&batches), (0..23).collect::<Vec<u32>>());
    assert_eq!(
        batches.iter().map(|b| b.len).collect::<Vec<_>>(),
        [4, 4, 4, 4, 4, 3]
    );

    let shuffled = |seed, epoch| {
        labels(&all(
            &data,
            LoaderOptions {
                shuffle: true,
                seed,
                epoch,
                ..plain.clone()
            },
        ))
    };
    let a = shuffled(1, 0);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..23).collect::<Vec<u32>>(), "a permutation");
    assert_ne!(a, sorted);
    assert_eq!(a, shuffled(1, 0), "same seed and epoch, same order");
    assert_ne!(a, shuffled(1, 1), "another epoch");
    assert_ne!(a, shuffled(2, 0), "another seed");
    let loader = BatchLoader::new(
        &data,
        LoaderOptions {
            shuffle: true,
            seed: 1,
            epoch: 0,
            ..plain
        },
    )
    .unwrap();
    assert_eq!(loader.order(), a.as_slice());
}

#[test]
fn drop_last_counts_match_the_reference_trainer() {
    let data = split(50_000, 1);
    let loader = BatchLoader::new(&data, opts(128, 2)).unwrap();
    assert_eq!((loader.num_batches(), loader.len()), (390, 390));
    let batches: Vec<Batch> = loader.collect();
    assert_eq!(batches.len(), 390);
    assert!(batches.iter().all(|b| b.len == 128));

    let keep = LoaderOptions {
        drop_last: false,
        ..opts(128, 2)
    };
    let batches = all(&data, keep);
    assert_eq!(batches.len(), 391);
    assert_eq!(batches[390].len, 50_000 - 390 * 128);
    assert_eq!(labels(&batches).len(), 50_000);
}

#[test]
fn skip_resumes_mid_epoch_with_the_same_batches() {
    let data = split(40, 4);
    let full = all(&data, opts(3, 2));
    for skip in [0, 1, 5, 13] {
        let resumed = all(&data, LoaderOptions { skip, ..opts(3, 3) });
        assert_eq!(resumed, full[skip..], "skip {skip}");
    }
    let err = BatchLoader::new(
        &data,
        LoaderOptions {
            skip: 14,
            ..opts(3, 1)
        },
    )
    .err();
    assert!(
        matches!(err, Some(Error::Options(ref m)) if m.contains("skip 14")),
        "{err:?}"
    );
}

#[test]
fn without_augmentation_batches_are_the_normalized_images() {
    let data = split(6, 4);
    let o = LoaderOptions {
        augment: false,
        shuffle: false,
        ..opts(3, 1)
    };
    let (mean, std) = (o.mean, o.std);
    let batches = all(&data, o);
    for b in &batches {
        for (j, &id) in b.labels.iter().enumerate() {
            let img = data.image(id as usize);
            for (k, &p) in img.iter().enumerate() {
                let c = k / 16;
                let want = (p as f32 / 255.0 - mean[c]) / std[c];
                assert!((b.images[j * 48 + k] - want).abs() < 1e-6);
            }
        }
    }
    // With augmentation on, the same images come out changed (crop/flip happened).
    let aug = all(
        &data,
        LoaderOptions {
            shuffle: false,
            ..opts(3, 1)
        },
    );
    assert_eq!(labels(&aug), labels(&batches));
    assert_ne!(aug, batches);
}

#[test]
fn dropping_early_stops_the_workers() {
    let data = split(2000, 16);
    let start = Instant::now();
    for workers in [1, 4] {
        let mut loader = BatchLoader::new(
            &data,
            LoaderOptions {
                prefetch: 1,
                ..opts(8, workers)
            },
        )
        .unwrap();
        let first = loader.next().unwrap();
        assert_eq!(first.index, 0);
        drop(loader); // joins the workers, which are blocked on full channels
    }
    // Never consuming at all is fine too.
    drop(BatchLoader::new(&data, opts(8, 3)).unwrap());
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn refuses_bad_options_and_inconsistent_splits() {
    let data = split(4, 2);
    let msg = |o: LoaderOptions| match BatchLoader::new(&data, o) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(msg(opts(0, 1)).contains("batch size"));
    assert!(msg(LoaderOptions {
        std: [0.2, 0.0, 0.2],
        ..opts(2, 1)
    })
    .contains("std[1]"));
    assert!(msg(LoaderOptions {
        mean: [f32::NAN, 0.0, 0.0],
        ..opts(2, 1)
    })
    .contains("mean[0]"));
    let bad = Arc::new(Split {
        len: 5,
        ..(*data).clone()
    });
    let err = BatchLoader::new(&bad, opts(2, 1)).err().unwrap();
    assert!(err.to_string().contains("5 images"), "{err}");
}
