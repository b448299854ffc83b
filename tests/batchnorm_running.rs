//! Running statistics of batch_norm2d follow PyTorch: after each training step
//! `running = (1 - momentum) * running + momentum * batch_stat`, where the variance fed in is
//! the *unbiased* batch variance (divides by count - 1). Evaluation then uses them.
use senet::tensor::{BatchNormOptions, RunningStats};
use senet::Tensor;

#[test]
fn running_statistics_after_three_steps_match_a_hand_computation() {
    // One channel, 4 values per batch (N=2, H=1, W=2), three different batches.
    let batches = [
        [1.0f32, 2.0, 3.0, 6.0],
        [0.0, 0.0, 4.0, 4.0],
        [-2.0, 2.0, 5.0, 7.0],
    ];
    let mut running = RunningStats::new(1);
    let (mut mean, mut var) = (0.0f64, 1.0f64);
    for b in &batches {
        let x = Tensor::from_vec(b.to_vec(), &[2, 1, 1, 2]).unwrap();
        x.batch_norm2d(None, None, Some(&mut running), BatchNormOptions::default())
            .unwrap();
        // By hand: the batch mean and the unbiased variance, then momentum 0.1.
        let m = b.iter().map(|&v| v as f64).sum::<f64>() / 4.0;
        let unbiased = b.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 3.0;
        mean = 0.9 * mean + 0.1 * m;
        var = 0.9 * var + 0.1 * unbiased;
    }
    // The values: batch means 3, 2, 3 and unbiased variances 14/3, 16/3, 46/3.
    let want_mean = 0.9 * (0.9 * (0.1 * 3.0) + 0.1 * 2.0) + 0.1 * 3.0;
    assert!((mean - want_mean).abs() < 1e-12);
    let want_var = 0.9 * (0.9 * (0.9 + 0.1 * 14.0 / 3.0) + 0.1 * 16.0 / 3.0) + 0.1 * 46.0 / 3.0;
    assert!((var - want_var).abs() < 1e-12);
    let got_mean = running.mean.item().unwrap();
    let got_var = running.var.item().unwrap();
    assert!(
        (got_mean - mean).abs() < 1e-6,
        "running mean {got_mean}, expected {mean}"
    );
    assert!(
        (got_var - var).abs() < 1e-5,
        "running var {got_var}, expected {var}"
    );

    // Evaluation normalizes with the running statistics, not the batch's.
    let x = Tensor::from_vec(vec![10.0f32, 20.0], &[1, 1, 1, 2]).unwrap();
    let opts = BatchNormOptions {
        training: false,
        ..Default::default()
    };
    let y = x
        .batch_norm2d(None, None, Some(&mut running), opts)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    let s = (var + 1e-5).sqrt();
    assert!(
        (y[0] - (10.0 - mean) / s).abs() < 1e-4 && (y[1] - (20.0 - mean) / s).abs() < 1e-4,
        "{y:?}"
    );
    // ...and leaves them unchanged.
    assert!((running.mean.item().unwrap() - mean).abs() < 1e-6);
}

#[test]
fn momentum_and_channels_are_independent() {
    // Two channels with momentum 0.5: channel 0 holds 0,2 / channel 1 holds 10,10.
    let x = Tensor::from_vec(vec![0.0f32, 2.0, 10.0, 10.0], &[1, 2, 1, 2]).unwrap();
    let mut running = RunningStats::new(2);
    let opts = BatchNormOptions {
        momentum: 0.5,
        ..Default::default()
    };
    x.batch_norm2d(None, None, Some(&mut running), opts)
        .unwrap();
    assert_eq!(running.mean.to_vec::<f64>().unwrap(), vec![0.5, 5.0]);
    // Unbiased variances 2 and 0.
    assert_eq!(running.var.to_vec::<f64>().unwrap(), vec![1.5, 0.5]);
}
