//! The statistics `senet reproduce` reports: mean and sample standard deviation over seeds,
//! Student's t distribution (any real degrees of freedom), Welch's interval for a difference of
//! two means, and the interval of paired per-seed differences.
//!
//! Written out here rather than taken from a crate because the whole computation is a page:
//! the t distribution's CDF is a regularized incomplete beta function, evaluated by its
//! continued fraction (modified Lentz), and the quantile is found by bisection on the CDF.
//! The tests check every figure against values computed independently (mpmath, 30 digits).

/// Arithmetic mean (NaN for an empty sample).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (divides by n - 1; NaN below two values).
///
/// ```
/// use senet_train::stats::{mean, std_dev};
/// assert_eq!((mean(&[2.0, 4.0, 6.0]), std_dev(&[2.0, 4.0, 6.0])), (4.0, 2.0));
/// assert!(std_dev(&[4.0]).is_nan());
/// ```
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 correct digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    // I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(b, a, 1.0 - x);
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp() / a;
    // Modified Lentz on 1 / (1 + d1 / (1 + d2 / (1 + ...))).
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        for numerator in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + numerator * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + numerator / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f
}

/// P(T <= t) for Student's t with `df` > 0 degrees of freedom (not necessarily whole).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (0 < p < 1): the t with
/// [`t_cdf`] = p, found by bisection to about 1e-12.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0 && df > 0.0, "t_quantile({p}, {df})");
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    // The CDF rises with t: widen the bracket until it holds p, then halve it.
    let (mut lo, mut hi) = (0.0, 1.0);
    while t_cdf(hi, df) < p {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// A difference of means with its two-sided confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// The estimated difference.
    pub diff: f64,
    /// Its standard error.
    pub se: f64,
    /// Degrees of freedom of the t distribution used.
    pub df: f64,
    /// The t quantile the half-width is `t * se` with.
    pub t: f64,
    /// Lower end: `diff - t * se`.
    pub low: f64,
    /// Upper end: `diff + t * se`.
    pub high: f64,
}

impl Interval {
    fn new(diff: f64, se: f64, df: f64, level: f64) -> Interval {
        let t = t_quantile(0.5 + level / 2.0, df);
        Interval {
            diff,
            se,
            df,
            t,
            low: diff - t * se,
            high: diff + t * se,
        }
    }

    /// Whether the interval leaves out 0 (the difference is shown at this level).
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Welch's interval for mean(a) - mean(b) at confidence `level` (0.95 for 95%): standard error
/// sqrt(s_a²/n_a + s_b²/n_b), degrees of freedom by Welch–Satterthwaite. `None` when either
/// sample has fewer than two values or both have no spread (then no interval can be said).
///
/// ```
/// use senet_train::stats::welch;
/// // Final test top-1 (%) of two models, three seeds each.
/// let senetv2 = [78.9, 78.4, 78.5];
/// let resnet = [77.2, 77.6, 77.3];
/// let i = welch(&senetv2, &resnet, 0.95).unwrap();
/// assert!((i.diff - 1.233).abs() < 1e-3);
/// assert!((i.df - 3.79).abs() < 1e-2 && (i.t - 2.838).abs() < 1e-3);
/// assert!(i.excludes_zero()); // [0.68, 1.78]: the gap is shown at 95%
/// assert!(welch(&senetv2, &[77.2], 0.95).is_none()); // one seed: no spread to go on
/// ```
pub fn welch(a: &[f64], b: &[f64], level: f64) -> Option<Interval> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let va = std_dev(a).powi(2) / a.len() as f64;
    let vb = std_dev(b).powi(2) / b.len() as f64;
    if va + vb <= 0.0 {
        return None;
    }
    let df =
        (va + vb).powi(2) / (va.powi(2) / (a.len() - 1) as f64 + vb.powi(2) / (b.len() - 1) as f64);
    Some(Interval::new(
        mean(a) - mean(b),
        (va + vb).sqrt(),
        df,
        level,
    ))
}

/// The interval of the mean of paired differences `a[i] - b[i]` (same seed, same data order) at
/// confidence `level`, with n - 1 degrees of freedom. `None` below two pairs or without spread.
pub fn paired(a: &[f64], b: &[f64], level: f64) -> Option<Interval> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    if d.len() < 2 {
        return None;
    }
    let se = std_dev(&d) / (d.len() as f64).sqrt();
    if se <= 0.0 {
        return None;
    }
    Some(Interval::new(mean(&d), se, (d.len() - 1) as f64, level))
}

/// One line on a pairwise difference `diff` of mean top-1 (in points) and its `interval`
/// (around the same difference), for example
/// `senetv2 - resnet: +0.30 points, 95% CI [-0.80, +1.40]: not shown at 3 seeds`.
pub fn verdict(a: &str, b: &str, diff: f64, interval: Option<&Interval>, seeds: usize) -> String {
    match interval {
        None if seeds < 2 => {
            format!("{a} - {b}: {diff:+.2} points; no interval at {seeds} seed (needs two or more)")
        }
        None => format!(
            "{a} - {b}: {diff:+.2} points; no interval at {seeds} seeds (each model's top-1 is \
             the same at every seed: no spread to estimate from)"
        ),
        Some(i) => {
            let said = if !i.excludes_zero() {
                format!("not shown at {seeds} seeds")
            } else if diff > 0.0 {
                format!("{a} above {b} at {seeds} seeds")
            } else {
                format!("{b} above {a} at {seeds} seeds")
            };
            format!(
                "{a} - {b}: {diff:+.2} points, 95% CI [{:+.2}, {:+.2}]: {said}",
                i.low, i.high
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(what: &str, got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol * want.abs().max(1.0),
            "{what}: got {got}, want {want}"
        );
    }

    #[test]
    fn t_quantiles_match_independent_values() {
        // 97.5% quantiles from mpmath (betainc + findroot, 30 digits), including a
        // fractional df as Welch–Satterthwaite gives.
        for (df, want) in [
            (1.0, 12.706_204_736_174_693),
            (2.0, 4.302_652_729_749_462),
            (2.5, 3.574_654_842_003_682),
            (3.0, 3.182_446_305_283_706),
            (10.0, 2.228_138_851_986_274),
            (30.0, 2.042_272_456_301_238),
            (1e6, 1.959_966_356_814_107),
        ] {
            close(&format!("t_0.975({df})"), t_quantile(0.975, df), want, 1e-9);
            close(
                &format!("t_0.025({df})"),
                t_quantile(0.025, df),
                -want,
                1e-9,
            );
        }
        close(
            "cdf(1.5, 4.2)",
            t_cdf(1.5, 4.2),
            0.897_659_607_937_164_3,
            1e-12,
        );
        close("cdf(0, 7)", t_cdf(0.0, 7.0), 0.5, 1e-15);
    }

    #[test]
    fn welch_interval_by_hand() {
        // a: mean 2.5, variance 5/3; b: mean 6, variance 10. s² / n: 5/12 and 2, so
        // se = sqrt(29/12) = 1.554563...; df = (29/12)² / ((5/12)² / 3 + 2² / 4) = 5.520787...
        let (a, b) = ([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]);
        let w = welch(&a, &b, 0.95).unwrap();
        close("diff", w.diff, -3.5, 1e-15);
        close("se", w.se, (29.0f64 / 12.0).sqrt(), 1e-15);
        close("df", w.df, 5.520_787_746_170_677, 1e-12);
        close("t", w.t, 2.499_331_092_946_661, 1e-9);
        close("low", w.low, -7.385_368_080_514_044, 1e-9);
        close("high", w.high, 0.385_368_080_514_044, 1e-8);
        assert!(!w.excludes_zero());
        assert_eq!(welch(&[1.0], &b, 0.95), None);
        assert_eq!(welch(&[1.0, 1.0], &[2.0, 2.0], 0.95), None);
    }

    #[test]
    fn paired_interval_by_hand() {
        // Differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), df 2, t = 4.302652...
        let p = paired(&[3.0, 5.0, 7.0], &[2.0, 3.0, 4.0], 0.95).unwrap();
        close("diff", p.diff, 2.0, 1e-15);
        close("se", p.se, 1.0 / 3f64.sqrt(), 1e-15);
        assert_eq!(p.df, 2.0);
        let half = 4.302_652_729_749_462 / 3f64.sqrt();
        close("low", p.low, 2.0 - half, 1e-9);
        close("high", p.high, 2.0 + half, 1e-9);
        assert!(!p.excludes_zero());
        // A wide, consistent gap is shown.
        assert!(paired(&[10.0, 11.0, 12.5], &[1.0, 2.0, 3.0], 0.95)
            .unwrap()
            .excludes_zero());
    }

    #[test]
    fn verdicts_say_what_the_interval_shows() {
        let w = welch(&[81.0, 81.5, 82.0], &[80.5, 81.5, 81.8], 0.95).unwrap();
        let v = verdict("senetv2", "resnet", w.diff, Some(&w), 3);
        assert!(
            v.starts_with("senetv2 - resnet: +0.23 points, 95% CI [-"),
            "{v}"
        );
        assert!(v.ends_with(": not shown at 3 seeds"), "{v}");
        let w = welch(&[70.0, 70.5, 71.0], &[80.0, 80.5, 81.0], 0.95).unwrap();
        let v = verdict("resnet", "senetv2", w.diff, Some(&w), 3);
        assert!(v.ends_with("senetv2 above resnet at 3 seeds"), "{v}");
        let v = verdict("a", "b", -0.5, None, 1);
        assert!(
            v.contains("a - b: -0.50 points; no interval at 1 seed (needs two"),
            "{v}"
        );
        let v = verdict("a", "b", 0.0, None, 2);
        assert!(v.contains("no interval at 2 seeds (each model"), "{v}");
    }

    #[test]
    fn mean_and_sample_std() {
        close("mean", mean(&[1.0, 2.0, 6.0]), 3.0, 1e-15);
        close(
            "std",
            std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
            (32.0f64 / 7.0).sqrt(),
            1e-15,
        );
        assert!(std_dev(&[1.0]).is_nan());
    }
}
