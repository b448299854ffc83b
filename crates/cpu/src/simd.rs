//! Which SIMD instructions the fast kernels use: detected once at run time, and capped by the
//! `SENET_SIMD` environment variable (`avx512`, `avx2` or `scalar`) so that every path can be
//! tested on one machine. On ARM the scalar path is the one: aarch64 always has NEON, and the
//! compiler vectorizes the plain kernels for it. Asking for a level the CPU lacks falls back to the best one it
//! has (with a warning), never to an illegal instruction.
//!
//! Results may differ in the last bits between levels (an FMA rounds once, a multiply and an
//! add twice), but at any one level they are the same for every thread count and every run.
use std::sync::OnceLock;

/// A SIMD instruction set, from the plainest up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust, which the compiler vectorizes for the build's baseline target.
    Scalar,
    /// x86's 256-bit AVX2 with FMA3.
    Avx2,
    /// x86's 512-bit AVX-512F.
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Scalar, Level::Avx2, Level::Avx512]
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
    }
}

/// The best level this CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// Every level this CPU can run, plainest first (what CI's kernel tests loop over).
pub fn available() -> Vec<Level> {
    let best = detected();
    [Level::Scalar, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l == Level::Scalar || l == best || (l == Level::Avx2 && best == Level::Avx512))
        .collect()
}

/// What `SENET_SIMD` asks for, resolved against what the CPU has: `(level used, warning)`.
fn resolve(
    requested: Option<&str>,
    detected: Level,
    available: &[Level],
) -> (Level, Option<String>) {
    let Some(req) = requested.filter(|r| !r.trim().is_empty()) else {
        return (detected, None);
    };
    match Level::parse(req) {
        Some(l) if available.contains(&l) => (l, None),
        Some(l) => (
            detected,
            Some(format!(
                "SENET_SIMD={req}: this CPU has no {}; using {}",
                l.name(),
                detected.name()
            )),
        ),
        None => (
            detected,
            Some(format!(
                "SENET_SIMD={req} is not one of avx512, avx2, scalar; using {}",
                detected.name()
            )),
        ),
    }
}

/// The level the kernels use: the detected one, or `SENET_SIMD`'s when the CPU has it. Read
/// once; a warning goes to stderr if the variable asks for something this CPU cannot do.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let requested = std::env::var("SENET_SIMD").ok();
        let (level, warning) = resolve(requested.as_deref(), detected(), &available());
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        level
    })
}

/// The machine's fp32 peak in GFLOP/s at the level in use, measured: every thread runs a
/// loop of independent fused multiply-adds (12 vector accumulators, no memory traffic) for
/// about `millis` milliseconds. What `cargo bench --bench kernels` prints kernels against.
pub fn measure_peak_gflops(millis: u64) -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let level = level();
    let deadline = std::time::Duration::from_millis(millis.max(1));
    let per_thread: f64 = (0..threads)
        .into_par_iter()
        .map(|t| {
            let start = std::time::Instant::now();
            let (mut flops, mut sink) = (0f64, 0f32);
            while start.elapsed() < deadline {
                let (f, v) = fma_burst(level, 1 << 16, t as f32);
                flops += f;
                sink += v;
            }
            std::hint::black_box(sink);
            flops / start.elapsed().as_secs_f64()
        })
        .sum();
    per_thread / 1e9
}

/// `iters` rounds of 12 independent FMAs on vectors of the level's width: (flops, a result
/// that keeps the work from being optimized away).
fn fma_burst(level: Level, iters: usize, seed: f32) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `level` is one this CPU has (`level()` never returns another).
        match level {
            Level::Avx512 => return unsafe { x86_fma::avx512(iters, seed) },
            Level::Avx2 => return unsafe { x86_fma::avx2(iters, seed) },
            Level::Scalar => {}
        }
    }
    let _ = level;
    let mut acc = [seed; 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * 0.999_999 + 1e-7;
        }
    }
    ((iters * 12 * 2) as f64, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
mod x86_fma {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: usize, seed: f32) -> (f64, f32) {
        let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(seed); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        let sum = acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum();
        ((iters * 12 * 16 * 2) as f64, sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: usize, seed: f32) -> (f64, f32) {
        let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(seed); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut lanes = [0f32; 8];
        let total = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        _mm256_storeu_ps(lanes.as_mut_ptr(), total);
        ((iters * 12 * 8 * 2) as f64, lanes.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_caps_the_level_and_never_asks_for_missing_instructions() {
        let all = [Level::Scalar, Level::Avx2, Level::Avx512];
        assert_eq!(resolve(None, Level::Avx512, &all), (Level::Avx512, None));
        assert_eq!(resolve(Some(""), Level::Avx2, &all), (Level::Avx2, None));
        assert_eq!(
            resolve(Some("AVX2"), Level::Avx512, &all),
            (Level::Avx2, None)
        );
        assert_eq!(
            resolve(Some("scalar"), Level::Avx512, &all),
            (Level::Scalar, None)
        );
        let (l, w) = resolve(Some("avx512"), Level::Avx2, &[Level::Scalar, Level::Avx2]);
        assert_eq!(l, Level::Avx2);
        assert!(w.unwrap().contains("no avx512"));
        let (l, w) = resolve(Some("sse9"), Level::Avx2, &[Level::Scalar, Level::Avx2]);
        assert_eq!(l, Level::Avx2);
        assert!(w.unwrap().contains("not one of"));
    }

    /// CI runs the kernel tests once per level with `SENET_SIMD` set: this fails if the
    /// variable were ignored, so each of those runs really tests its path.
    #[test]
    fn the_level_in_use_is_the_one_senet_simd_asks_for() {
        if let Some(asked) = std::env::var("SENET_SIMD")
            .ok()
            .and_then(|v| Level::parse(&v))
        {
            if available().contains(&asked) {
                assert_eq!(level(), asked);
            }
        }
    }

    #[test]
    fn the_peak_is_measured_and_positive() {
        let peak = measure_peak_gflops(20);
        assert!(peak.is_finite() && peak > 0.1, "{peak}");
    }

    #[test]
    fn the_level_in_use_is_one_this_cpu_has() {
        assert!(available().contains(&level()));
        assert!(available().contains(&Level::Scalar));
        assert_eq!(*available().last().unwrap(), detected());
    }
}
