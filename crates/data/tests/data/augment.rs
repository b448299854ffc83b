//! Properties of the augmentation and normalization functions.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use senet_data::augment::{
    crop_padded, flip_horizontal, normalize, normalize_table, pad, Augmentation, PAD,
};

const S: usize = 7; // odd and small: edge cases show up

fn random_image(rng: &mut StdRng) -> Vec<u8> {
    (0..3 * S * S).map(|_| rng.random_range(1..=255)).collect()
}

/// Pixel (c, y, x) of a [3, n, n] image.
fn at(img: &[u8], n: usize, c: usize, y: usize, x: usize) -> u8 {
    img[(c * n + y) * n + x]
}

#[test]
fn flip_is_a_mirror_and_its_own_inverse() {
    let mut rng = StdRng::seed_from_u64(1);
    let img = random_image(&mut rng);
    let mut flipped = img.clone();
    flip_horizontal(&mut flipped, S);
    for c in 0..3 {
        for y in 0..S {
            for x in 0..S {
                assert_eq!(at(&flipped, S, c, y, x), at(&img, S, c, y, S - 1 - x));
            }
        }
    }
    flip_horizontal(&mut flipped, S);
    assert_eq!(flipped, img);
}

#[test]
fn every_crop_is_a_window_of_the_zero_padded_image() {
    let mut rng = StdRng::seed_from_u64(2);
    let img = random_image(&mut rng);
    let big = S + 2 * PAD;
    let padded = pad(&img, S, PAD);
    assert_eq!(padded.len(), 3 * big * big);
    let mut out = vec![0u8; 3 * S * S];
    for dy in 0..=2 * PAD {
        for dx in 0..=2 * PAD {
            crop_padded(&img, S, dx, dy, &mut out);
            for c in 0..3 {
                for y in 0..S {
                    for x in 0..S {
                        let want = at(&padded, big, c, y + dy, x + dx);
                        assert_eq!(at(&out, S, c, y, x), want, "dx {dx} dy {dy} ({c},{y},{x})");
                    }
                }
            }
        }
    }
    // The centred crop is the image itself.
    Augmentation::IDENTITY.apply(&img, S, &mut out);
    assert_eq!(out, img);
}

#[test]
fn random_draws_stay_in_bounds_and_apply_crop_then_flip() {
    let mut rng = StdRng::seed_from_u64(3);
    let img = random_image(&mut rng);
    let padded = pad(&img, S, PAD);
    let big = S + 2 * PAD;
    let (mut seen_dx, mut flips) = ([false; 2 * PAD + 1], 0);
    let mut out = vec![0u8; 3 * S * S];
    for _ in 0..400 {
        let aug = Augmentation::random(&mut rng);
        assert!(aug.dx <= 2 * PAD && aug.dy <= 2 * PAD, "{aug:?}");
        seen_dx[aug.dx] = true;
        flips += aug.flip as usize;
        aug.apply(&img, S, &mut out);
        assert_eq!(out.len(), 3 * S * S);
        for c in 0..3 {
            for y in 0..S {
                for x in 0..S {
                    let sx = if aug.flip { S - 1 - x } else { x };
                    assert_eq!(
                        at(&out, S, c, y, x),
                        at(&padded, big, c, y + aug.dy, sx + aug.dx)
                    );
                }
            }
        }
    }
    assert!(
        seen_dx.iter().all(|&s| s),
        "every offset 0..=8 occurs: {seen_dx:?}"
    );
    assert!(
        (150..250).contains(&flips),
        "flip probability 0.5: {flips}/400"
    );
}

#[test]
fn padding_is_black_before_normalization() {
    let img = vec![255u8; 3 * 32 * 32];
    let mut out = vec![0u8; 3 * 32 * 32];
    crop_padded(&img, 32, 0, 0, &mut out); // shifted down-right: 4 black rows and columns
    let (mean, std) = (senet_data::CIFAR10_MEAN, senet_data::CIFAR10_STD);
    let mut norm = vec![0f32; out.len()];
    normalize(&out, &normalize_table(&mean, &std), &mut norm);
    assert_eq!(norm.len(), 3 * 32 * 32);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let i = (c * 32 + y) * 32 + x;
                let black = y < PAD || x < PAD;
                assert_eq!(out[i], if black { 0 } else { 255 });
                let want = if black {
                    (0.0 - mean[c]) / std[c]
                } else {
                    (1.0 - mean[c]) / std[c]
                };
                assert!(
                    (norm[i] - want).abs() < 1e-6,
                    "({c},{y},{x}) {} vs {want}",
                    norm[i]
                );
            }
        }
    }
}

#[test]
fn normalization_is_per_channel() {
    let img: Vec<u8> = (0..3 * 4).map(|i| (i * 20) as u8).collect();
    let (mean, std) = ([0.1, 0.5, 0.9], [0.2, 0.3, 0.4]);
    let mut out = vec![0f32; 12];
    normalize(&img, &normalize_table(&mean, &std), &mut out);
    for (i, (&o, &p)) in out.iter().zip(&img).enumerate() {
        let c = i / 4;
        let want = (p as f32 / 255.0 - mean[c]) / std[c];
        assert!((o - want).abs() < 1e-6);
    }
}
