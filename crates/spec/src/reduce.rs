//! Reductions over the middle axis of `[outer, reduced, inner]`.

/// Which reduction to apply over the reduced axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Add the values up.
    Sum,
    /// Keep the largest value.
    Max,
}

impl ReduceOp {
    /// The lowercase name (`"sum"`, `"max"`), for messages and profiles.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
        }
    }
}

/// Sum (or max) over the middle axis of `[outer, reduced, inner]`.
pub fn reduce(x: &[f64], outer: usize, reduced: usize, inner: usize, op: ReduceOp) -> Vec<f64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let vals = (0..reduced).map(|r| x[(o * reduced + r) * inner + i]);
            out.push(match op {
                ReduceOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                ReduceOp::Sum => vals.sum(),
            });
        }
    }
    out
}
