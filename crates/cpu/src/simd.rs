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

    #[test]
    fn the_level_in_use_is_one_this_cpu_has() {
        assert!(available().contains(&level()));
        assert!(available().contains(&Level::Scalar));
        assert_eq!(*available().last().unwrap(), detected());
    }
}
