//! Axis ticks at round numbers, and their labels without floating-point noise.

/// The round steps, per power of ten, that ticks may use.
const MANTISSAS: [f64; 4] = [1.0, 2.0, 2.5, 5.0];

/// At most `max_ticks` (at least 2) increasing, evenly spaced round numbers — multiples of 1, 2,
/// 2.5 or 5 times a power of ten — whose first is at or below `lo` and last at or above `hi`,
/// so an axis from the first to the last tick shows the whole range. The step is the smallest
/// round one that needs no more than `max_ticks` ticks. A degenerate range (equal ends) is
/// widened around its value; a non-finite one becomes 0..1.
///
/// ```
/// use senet_train::plot::nice_ticks;
/// assert_eq!(nice_ticks(0.0, 0.93, 6), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
/// assert_eq!(nice_ticks(61.7, 78.6, 6), [60.0, 65.0, 70.0, 75.0, 80.0]);
/// ```
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    let (lo, hi) = widen(lo, hi);
    let max_ticks = max_ticks.max(2) as f64;
    // Start one power of ten below a step that would give about max_ticks ticks, then go up.
    let start = ((hi - lo) / max_ticks).log10().floor() as i32 - 1;
    for exp in start..start + 64 {
        for m in MANTISSAS {
            // m * 10^exp, computed so that e.g. 0.1 * 3 prints as 0.3: scale by an exact power.
            let at = |k: f64| {
                if exp >= 0 {
                    k * m * 10f64.powi(exp)
                } else {
                    k * m / 10f64.powi(-exp)
                }
            };
            let step = at(1.0);
            let first = (lo / step + 1e-9).floor();
            let last = (hi / step - 1e-9).ceil();
            if last - first + 1.0 <= max_ticks {
                return (first as i64..=last as i64).map(|k| at(k as f64)).collect();
            }
        }
    }
    vec![lo, hi]
}

/// A range that ticks can be put on: finite, increasing and not empty.
fn widen(lo: f64, hi: f64) -> (f64, f64) {
    // A span past f64's range (values near ±1e308) has no step: treat it as unusable too.
    if !lo.is_finite() || !hi.is_finite() || !(hi - lo).is_finite() {
        return (0.0, 1.0);
    }
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    if hi - lo > 1e-12 * lo.abs().max(hi.abs()) {
        return (lo, hi);
    }
    let pad = if lo == 0.0 { 1.0 } else { lo.abs() / 2.0 };
    (lo - pad, hi + pad)
}

/// The label of tick `v` on an axis whose ticks are `step` apart: as many decimals as the step
/// needs (0.05, not 0.0500000001), or `1.5e-4` style when that would take more than 4.
pub fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() { "0" } else { "?" }.to_string();
    }
    let decimals = (0..=12)
        .find(|&d| {
            let scaled = step.abs() * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12);
    if decimals <= 4 {
        return format!("{v:.*}", decimals as usize);
    }
    let mut exp = v.abs().log10().floor() as i32;
    let mut mantissa = v / 10f64.powi(exp);
    if mantissa.abs() >= 9.995 {
        mantissa /= 10.0;
        exp += 1;
    }
    let m = format!("{mantissa:.2}");
    let m = m.trim_end_matches('0').trim_end_matches('.');
    format!("{m}e{exp}")
}

/// Ticks for an epoch axis from 0 to `max`: whole epochs (1, 2 or 5 times a power of ten
/// apart) once the axis spans 2 epochs or more, round fractions below that.
pub fn epoch_ticks(max: f64) -> Vec<f64> {
    const MAX_TICKS: f64 = 8.0;
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    if max < 2.0 {
        return nice_ticks(0.0, max, MAX_TICKS as usize);
    }
    let step = (0..)
        .map(|k: i32| [1.0, 2.0, 5.0][(k % 3) as usize] * 10f64.powi(k / 3))
        .find(|step| (max / step - 1e-9).ceil() + 1.0 <= MAX_TICKS)
        .unwrap_or(1.0);
    let last = (max / step - 1e-9).ceil() as i64;
    (0..=last).map(|k| k as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step of `ticks`, checked to be round and constant.
    fn round_step(ticks: &[f64]) -> f64 {
        let step = ticks[1] - ticks[0];
        let exp = step.log10().floor();
        let m = step / 10f64.powf(exp);
        assert!(
            [1.0, 2.0, 2.5, 5.0, 10.0]
                .iter()
                .any(|r| (m - r).abs() < 1e-6),
            "step {step} of {ticks:?} is not round"
        );
        for w in ticks.windows(2) {
            assert!(
                (w[1] - w[0] - step).abs() < 1e-9 * step.max(1.0),
                "{ticks:?}"
            );
        }
        for &t in ticks {
            assert!(
                (t / step - (t / step).round()).abs() < 1e-6,
                "{t} is not a multiple"
            );
        }
        step
    }

    #[test]
    fn nice_ticks_are_round_increasing_and_cover_the_range() {
        let cases = [
            (0.31, 2.31, 6),
            (28.3, 91.2, 6),
            (0.0, 0.1, 6),
            (1.1e-6, 9.7e-5, 5),
            (-3.0, 7.0, 8),
            (0.0, 15.0, 8),
            (123_456.0, 987_654.0, 4),
            (0.5, 0.5, 5),
            (1e-4, 1e-4, 5),
            (0.3, 0.9, 2),
        ];
        for (lo, hi, max) in cases {
            let t = nice_ticks(lo, hi, max);
            assert!(t.len() >= 2 && t.len() <= max, "{lo}..{hi}: {t:?}");
            assert!(t[0] <= lo && *t.last().unwrap() >= hi, "{lo}..{hi}: {t:?}");
            round_step(&t);
        }
        assert_eq!(nice_ticks(0.0, 1.0, 6), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.31, 2.31, 6), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(nice_ticks(f64::NAN, 1.0, 3), [0.0, 0.5, 1.0]);
    }

    #[test]
    fn labels_have_no_noise_and_small_numbers_stay_readable() {
        assert_eq!(tick_label(0.1 + 0.2, 0.1), "0.3");
        assert_eq!(tick_label(0.05, 0.05), "0.05");
        assert_eq!(tick_label(2.5, 0.5), "2.5");
        assert_eq!(tick_label(40.0, 20.0), "40");
        assert_eq!(tick_label(-0.0, 0.1), "0");
        assert_eq!(tick_label(0.0001, 0.0001), "0.0001");
        assert_eq!(tick_label(1e-4, 5e-5), "1e-4");
        assert_eq!(tick_label(1.5e-4, 5e-5), "1.5e-4");
        assert_eq!(tick_label(2.5e-5, 2.5e-5), "2.5e-5");
    }

    #[test]
    fn epoch_ticks_are_whole_epochs_from_zero() {
        assert_eq!(epoch_ticks(15.0), [0.0, 5.0, 10.0, 15.0]);
        assert_eq!(epoch_ticks(3.0), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(epoch_ticks(200.0), [0.0, 50.0, 100.0, 150.0, 200.0]);
        let short = epoch_ticks(0.45);
        assert_eq!(short[0], 0.0);
        assert!(*short.last().unwrap() >= 0.45);
        round_step(&short);
    }
}
