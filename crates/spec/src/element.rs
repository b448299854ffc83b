use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

/// A floating-point element type the kernels run on: `f32` or `f64`.
pub trait Element:
    num_traits::Float
    + ndarray::LinalgScalar
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + Default
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Name used in messages (`"f32"`, `"f64"`).
    const NAME: &'static str;
    /// Rounds an f64 to this type (exact for `f64`); how reference results come back.
    fn from_f64(v: f64) -> Self;
    /// Widens to f64 (exact for both types), so the reference loops can compute in f64.
    fn to_f64(self) -> f64;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}
