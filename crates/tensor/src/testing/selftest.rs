//! The op self-test behind `senet selftest`: every op, on random shapes (the cases of
//! `op_cases.rs`). On the CPU the forward result is compared with the reference loop of
//! `senet_spec` (run in f64) and the gradients with central differences (`gradcheck`); on a
//! GPU both are compared with the CPU's.
use super::op_cases::{ops, Case};
use super::{gradcheck, random_tensor, GradcheckOptions};
use crate::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use senet_spec::testing::worst_ratio;

/// The forward result (f32 on the device) may differ from the f64 reference by rounding:
/// allow 1e-4 of `1 + |reference|`, about 100 f32 ulps on sums of tens of O(1) terms.
pub const FORWARD_TOLERANCE: f64 = 1e-4;

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The op checked, e.g. `"conv2d"`.
    pub op: &'static str,
    /// How many random cases ran.
    pub cases: usize,
    /// Worst `|ours - reference| / (1 + |reference|)` over all outputs of all cases.
    pub forward_error: f64,
    /// Worst gradcheck error relative to its allowance (pass: <= 1).
    pub gradient_ratio: f64,
    /// Worst absolute gradient error.
    pub gradient_error: f64,
    /// An error an op returned instead of a result.
    pub failure: Option<String>,
}

impl Row {
    /// Whether the op ran, its forward was within [`FORWARD_TOLERANCE`] and its gradients
    /// within tolerance.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
            && self.forward_error <= FORWARD_TOLERANCE
            && self.gradient_ratio <= 1.0
    }
}

/// Runs one case: forward in f32 against the reference, then gradcheck in f64.
fn check(case: &Case, row: &mut Row) -> Result<()> {
    let inputs32: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|t| t.to_dtype(DType::F32))
        .collect::<Result<_>>()?;
    let out = (case.op)(&inputs32)?.to_vec::<f64>()?;
    row.forward_error = row.forward_error.max(scaled_error(&out, &case.reference));
    let report = gradcheck(|t| (case.op)(t), &case.inputs, GradcheckOptions::default())?;
    row.gradient_ratio = row.gradient_ratio.max(report.max_ratio);
    row.gradient_error = row.gradient_error.max(report.max_abs_error);
    Ok(())
}

/// Worst `|got - want| / (1 + |want|)`; a length mismatch or a NaN counts as infinite.
fn scaled_error(got: &[f64], want: &[f64]) -> f64 {
    worst_ratio(got, want, 1.0)
}

/// GPU gradients go through several kernels whose f32 sums run in a different order than the
/// CPU's: allow 1e-3 of `1 + |cpu value|` (about 10^4 ulps; a wrong rule is off by O(1)).
pub const GPU_GRADIENT_TOLERANCE: f64 = 1e-3;

/// Runs one case on `device`: its forward and its gradients (of the same mid-graph objective
/// gradcheck uses) against the CPU's f32 results.
fn check_on(case: &Case, row: &mut Row, device: Device) -> Result<()> {
    let on = |dev: Device| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let inputs: Vec<Tensor> = case
            .inputs
            .iter()
            .map(|t| {
                Ok(t.to_dtype(DType::F32)?
                    .to_device(dev)?
                    .detach()
                    .requires_grad())
            })
            .collect::<Result<_>>()?;
        let y = (case.op)(&inputs)?;
        let r = random_tensor(y.shape(), 1)
            .to_dtype(DType::F32)?
            .to_device(dev)?;
        let s = random_tensor(y.shape(), 2)
            .to_dtype(DType::F32)?
            .to_device(dev)?;
        let grads = y.mul(&r)?.add(&s)?.sum_all()?.backward()?;
        let g = inputs
            .iter()
            .map(|x| {
                grads
                    .get(x)
                    .map_or(Ok(vec![0.0; x.numel()]), |g| g.to_vec::<f64>())
            })
            .collect::<Result<_>>()?;
        Ok((y.to_vec::<f64>()?, g))
    };
    let (y_cpu, g_cpu) = on(Device::Cpu)?;
    let (y_dev, g_dev) = on(device)?;
    row.forward_error = row.forward_error.max(scaled_error(&y_dev, &y_cpu));
    for (gd, gc) in g_dev.iter().zip(&g_cpu) {
        let e = scaled_error(gd, gc);
        row.gradient_error = row.gradient_error.max(e);
        row.gradient_ratio = row.gradient_ratio.max(e / GPU_GRADIENT_TOLERANCE);
    }
    Ok(())
}

/// Checks every op on `cases` random cases each; the same seed gives the same cases. On the
/// CPU each op is compared with naive loops and central differences; on a GPU with the CPU.
pub fn run(cases: usize, seed: u64, device: Device) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    ops()
        .into_iter()
        .map(|(op, generate)| {
            let mut row = Row {
                op,
                cases,
                forward_error: 0.0,
                gradient_ratio: 0.0,
                gradient_error: 0.0,
                failure: None,
            };
            for _ in 0..cases {
                let case = generate(&mut rng);
                let result = match device {
                    Device::Cpu => check(&case, &mut row),
                    _ => check_on(&case, &mut row, device),
                };
                if let Err(e) = result {
                    row.failure = Some(e.to_string());
                    break;
                }
            }
            row
        })
        .collect()
}

/// The table `senet selftest` prints, with a footnote on what the columns compare.
pub fn format_table(rows: &[Row], device: Device) -> String {
    let mut s = format!(
        "{:<22} {:>5} {:>14} {:>14} {:>14}  {}\n",
        "op", "cases", "forward err", "grad err", "grad/allowed", "result"
    );
    for r in rows {
        let result = match &r.failure {
            Some(e) => format!("FAIL: {e}"),
            None if r.passed() => "pass".to_string(),
            None => "FAIL".to_string(),
        };
        s += &format!(
            "{:<22} {:>5} {:>14.3e} {:>14.3e} {:>14.3e}  {}\n",
            r.op, r.cases, r.forward_error, r.gradient_error, r.gradient_ratio, result
        );
    }
    s += &match device {
        Device::Cpu => format!("forward err: |f32 result - f64 naive loop| / (1 + |reference|), allowed {FORWARD_TOLERANCE:e}; grad: f64 analytic vs central differences, allowed 1e-6 + 1e-5 * |numeric|\n"),
        _ => format!("forward err: |{device} - cpu| / (1 + |cpu|) in f32, allowed {FORWARD_TOLERANCE:e}; grad err: the same for every input's gradient, allowed {GPU_GRADIENT_TOLERANCE:e}\n"),
    };
    s
}
