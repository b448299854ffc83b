//! `senet selftest`: every op, on random shapes, forward against a naive reference loop (run
//! in f64 from `senet_spec`) and gradients against central differences (`gradcheck`).
use crate::spec;
use crate::spec::batchnorm::BnShape;
use crate::spec::conv2d::Conv2dGeometry;
use crate::spec::grouped_linear::GroupedLinearShape;
use crate::spec::pool::Pool2dGeometry;
use crate::tensor::testing::{gradcheck, random_tensor, uniform_tensor, GradcheckOptions};
use crate::tensor::{BatchNormOptions, Conv2dOptions, DType, Device, Pool2dOptions, RunningStats};
use crate::{Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The forward result (f32 on the device) may differ from the f64 reference by rounding:
/// allow 1e-4 of `1 + |reference|`, about 100 f32 ulps on sums of tens of O(1) terms.
pub const FORWARD_TOLERANCE: f64 = 1e-4;

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: &'static str,
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
    pub fn passed(&self) -> bool {
        self.failure.is_none()
            && self.forward_error <= FORWARD_TOLERANCE
            && self.gradient_ratio <= 1.0
    }
}

type OpFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// One random case: f64 inputs, the op as a function of them, and the reference output.
struct Case {
    inputs: Vec<Tensor>,
    op: OpFn,
    reference: Vec<f64>,
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().expect("reading a CPU tensor")
}

/// A random shape of `rank` with dims in `1..=max`.
fn dims(rng: &mut StdRng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=max)).collect()
}

fn binary(
    rng: &mut StdRng,
    f: fn(&Tensor, &Tensor) -> Result<Tensor>,
    reference: fn(f64, f64) -> f64,
    positive_rhs: bool,
) -> Case {
    let rank = rng.random_range(1..=4);
    let a_shape = dims(rng, rank, 4);
    // The right operand broadcasts: some axes set to 1, sometimes fewer axes.
    let drop = rng.random_range(0..a_shape.len());
    let b_shape: Vec<usize> = a_shape[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.4) { 1 } else { d })
        .collect();
    let a = random_tensor(&a_shape, rng.random());
    let b = if positive_rhs {
        uniform_tensor(&b_shape, 0.5, 2.0, rng.random())
    } else {
        random_tensor(&b_shape, rng.random())
    };
    let (out, _) = spec::elementwise::broadcast_binary(
        &values(&a),
        &a_shape,
        &values(&b),
        &b_shape,
        reference,
    );
    Case {
        inputs: vec![a, b],
        op: Box::new(move |t| f(&t[0], &t[1])),
        reference: out,
    }
}

fn unary(
    rng: &mut StdRng,
    f: fn(&Tensor) -> Result<Tensor>,
    reference: fn(f64) -> f64,
    low: f64,
    high: f64,
) -> Case {
    let rank = rng.random_range(1..=3);
    let shape = dims(rng, rank, 5);
    let x = uniform_tensor(&shape, low, high, rng.random());
    let out = values(&x).into_iter().map(reference).collect();
    Case {
        inputs: vec![x],
        op: Box::new(move |t| f(&t[0])),
        reference: out,
    }
}

/// A case for a reduction over a random non-empty set of axes of a rank-3 tensor.
fn reduce(rng: &mut StdRng, which: &'static str) -> Case {
    let shape = dims(rng, 3, 4);
    let axes: Vec<usize> = match rng.random_range(0..4) {
        0 => vec![0],
        1 => vec![1, 2],
        2 => vec![0, 2],
        _ => vec![0, 1, 2],
    };
    let x = random_tensor(&shape, rng.random());
    // Reference: move reduced axes last, then reduce rows.
    let kept: Vec<usize> = (0..3).filter(|a| !axes.contains(a)).collect();
    let perm: Vec<usize> = kept.iter().chain(&axes).copied().collect();
    let moved = spec::elementwise::permute(&values(&x), &shape, &perm);
    let outer: usize = kept.iter().map(|&a| shape[a]).product();
    let red: usize = axes.iter().map(|&a| shape[a]).product();
    let mut reference = spec::reduce::reduce(&moved, outer, red, 1, which == "max");
    if which == "mean" {
        reference.iter_mut().for_each(|v| *v /= red as f64);
    }
    let op: OpFn = match which {
        "sum" => Box::new(move |t| t[0].sum(&axes, false)),
        "mean" => Box::new(move |t| t[0].mean(&axes, false)),
        _ => Box::new(move |t| t[0].max(&axes, true)),
    };
    Case {
        inputs: vec![x],
        op,
        reference,
    }
}

fn conv_geometry(rng: &mut StdRng) -> (Conv2dGeometry, bool) {
    let groups = if rng.random_bool(0.25) {
        0
    } else {
        rng.random_range(1..=2)
    };
    let (cin_g, cout_g) = if groups == 0 {
        (1, 1)
    } else {
        (rng.random_range(1..=2), rng.random_range(1..=2))
    };
    let groups = if groups == 0 {
        rng.random_range(2..=3)
    } else {
        groups
    };
    let kernel = (rng.random_range(1..=3), rng.random_range(1..=3));
    let dilation = (rng.random_range(1..=2), 1);
    let padding = (rng.random_range(0..=1), rng.random_range(0..=1));
    let stride = (rng.random_range(1..=2), rng.random_range(1..=2));
    let fit = |k: usize, d: usize, p: usize| (d * (k - 1) + 1).saturating_sub(2 * p).max(1);
    let g = Conv2dGeometry {
        batch: rng.random_range(1..=2),
        in_channels: cin_g * groups,
        in_h: fit(kernel.0, dilation.0, padding.0) + rng.random_range(0..=3),
        in_w: fit(kernel.1, dilation.1, padding.1) + rng.random_range(0..=3),
        out_channels: cout_g * groups,
        kernel,
        stride,
        padding,
        dilation,
        groups,
    };
    (g, rng.random_bool(0.5))
}

fn conv2d(rng: &mut StdRng) -> Case {
    let (g, with_bias) = conv_geometry(rng);
    let x = random_tensor(&[g.batch, g.in_channels, g.in_h, g.in_w], rng.random());
    let w = random_tensor(
        &[
            g.out_channels,
            g.in_channels / g.groups,
            g.kernel.0,
            g.kernel.1,
        ],
        rng.random(),
    );
    let b = random_tensor(&[g.out_channels], rng.random());
    let bias = with_bias.then(|| values(&b));
    let reference = spec::conv2d::conv2d_forward(&g, &values(&x), &values(&w), bias.as_deref());
    let opts = Conv2dOptions {
        stride: g.stride,
        padding: g.padding,
        dilation: g.dilation,
        groups: g.groups,
    };
    let mut inputs = vec![x, w];
    if with_bias {
        inputs.push(b);
    }
    Case {
        inputs,
        op: Box::new(move |t| t[0].conv2d(&t[1], t.get(2), opts)),
        reference,
    }
}

fn batch_norm(rng: &mut StdRng, training: bool) -> Case {
    let s = BnShape {
        n: rng.random_range(1..=3),
        c: rng.random_range(1..=3),
        hw: 0,
    };
    let (h, w) = (rng.random_range(1..=3), rng.random_range(2..=3));
    let s = BnShape { hw: h * w, ..s };
    let x = random_tensor(&[s.n, s.c, h, w], rng.random());
    let weight = uniform_tensor(&[s.c], 0.5, 1.5, rng.random());
    let bias = random_tensor(&[s.c], rng.random());
    let mean = random_tensor(&[s.c], rng.random());
    let var = uniform_tensor(&[s.c], 0.5, 2.0, rng.random());
    let eps = 1e-5;
    let (xv, wv, bv) = (values(&x), values(&weight), values(&bias));
    let reference = if training {
        spec::batchnorm::batch_norm2d_forward_train(s, &xv, Some(&wv), Some(&bv), eps).y
    } else {
        spec::batchnorm::batch_norm2d_forward_eval(
            s,
            &xv,
            Some(&wv),
            Some(&bv),
            &values(&mean),
            &values(&var),
            eps,
        )
    };
    let opts = BatchNormOptions {
        training,
        momentum: 0.1,
        eps,
    };
    let op: OpFn = Box::new(move |t| {
        let dtype = t[0].dtype();
        let dev = t[0].device();
        let mut running = RunningStats {
            mean: mean.to_dtype(dtype)?.to_device(dev)?,
            var: var.to_dtype(dtype)?.to_device(dev)?,
        };
        t[0].batch_norm2d(Some(&t[1]), Some(&t[2]), Some(&mut running), opts)
    });
    Case {
        inputs: vec![x, weight, bias],
        op,
        reference,
    }
}

fn pool(rng: &mut StdRng, max: bool) -> Case {
    let kernel = (rng.random_range(1..=3), rng.random_range(1..=3));
    let g = Pool2dGeometry {
        batch: rng.random_range(1..=2),
        channels: rng.random_range(1..=3),
        in_h: kernel.0 + rng.random_range(0..=3),
        in_w: kernel.1 + rng.random_range(0..=3),
        kernel,
        stride: (rng.random_range(1..=2), rng.random_range(1..=2)),
        padding: (
            rng.random_range(0..=kernel.0 / 2),
            rng.random_range(0..=kernel.1 / 2),
        ),
    };
    let x = random_tensor(&[g.batch, g.channels, g.in_h, g.in_w], rng.random());
    let opts = Pool2dOptions {
        kernel: g.kernel,
        stride: g.stride,
        padding: g.padding,
    };
    if max {
        let reference = spec::pool::max_pool2d_forward(&g, &values(&x)).0;
        Case {
            inputs: vec![x],
            op: Box::new(move |t| t[0].max_pool2d(opts)),
            reference,
        }
    } else {
        let reference = spec::pool::avg_pool2d_forward(&g, &values(&x));
        Case {
            inputs: vec![x],
            op: Box::new(move |t| t[0].avg_pool2d(opts)),
            reference,
        }
    }
}

fn grouped_linear(rng: &mut StdRng, groups: Option<usize>) -> Case {
    let k = groups.unwrap_or_else(|| rng.random_range(2..=4));
    let s = GroupedLinearShape {
        batch: rng.random_range(1..=3),
        groups: k,
        in_features: rng.random_range(1..=5),
        out_features: rng.random_range(1..=4),
        shared_input: groups.is_some() || rng.random_bool(0.5),
    };
    let in_cols = if s.shared_input {
        s.in_features
    } else {
        k * s.in_features
    };
    let x = random_tensor(&[s.batch, in_cols], rng.random());
    let with_bias = rng.random_bool(0.7);
    let w = random_tensor(&[k, s.out_features, s.in_features], rng.random());
    let b = random_tensor(&[k, s.out_features], rng.random());
    let bias = with_bias.then(|| values(&b));
    let reference =
        spec::grouped_linear::grouped_linear_forward(s, &values(&x), &values(&w), bias.as_deref());
    let mut inputs = vec![x];
    let op: OpFn = if groups.is_some() {
        // linear: weight [out, in], bias [out]
        inputs.push(w.reshape(&[s.out_features, s.in_features]).unwrap_or(w));
        if with_bias {
            inputs.push(b.reshape(&[s.out_features]).unwrap_or(b));
        }
        Box::new(|t| t[0].linear(&t[1], t.get(2)))
    } else {
        inputs.push(w);
        if with_bias {
            inputs.push(b);
        }
        Box::new(|t| t[0].grouped_linear(&t[1], t.get(2)))
    };
    Case {
        inputs,
        op,
        reference,
    }
}

type Generator = Box<dyn Fn(&mut StdRng) -> Case>;

/// Every op, with a generator of random cases.
fn ops() -> Vec<(&'static str, Generator)> {
    let mut v: Vec<(&'static str, Generator)> = vec![
        (
            "add",
            Box::new(|r| binary(r, Tensor::add, |a, b| a + b, false)),
        ),
        (
            "sub",
            Box::new(|r| binary(r, Tensor::sub, |a, b| a - b, false)),
        ),
        (
            "mul",
            Box::new(|r| binary(r, Tensor::mul, |a, b| a * b, false)),
        ),
        (
            "div",
            Box::new(|r| binary(r, Tensor::div, |a, b| a / b, true)),
        ),
        (
            "neg",
            Box::new(|r| unary(r, Tensor::neg, |x| -x, -2.0, 2.0)),
        ),
        (
            "exp",
            Box::new(|r| unary(r, Tensor::exp, f64::exp, -2.0, 2.0)),
        ),
        (
            "log",
            Box::new(|r| unary(r, Tensor::log, f64::ln, 0.2, 3.0)),
        ),
        (
            "sqrt",
            Box::new(|r| unary(r, Tensor::sqrt, f64::sqrt, 0.2, 3.0)),
        ),
        (
            "powf",
            Box::new(|r| unary(r, |t| t.powf(1.7), |x| x.powf(1.7), 0.2, 3.0)),
        ),
        (
            "relu",
            Box::new(|r| unary(r, Tensor::relu, |x| x.max(0.0), -2.0, 2.0)),
        ),
        (
            "sigmoid",
            Box::new(|r| unary(r, Tensor::sigmoid, |x| 1.0 / (1.0 + (-x).exp()), -4.0, 4.0)),
        ),
        (
            "tanh",
            Box::new(|r| unary(r, Tensor::tanh, f64::tanh, -3.0, 3.0)),
        ),
        ("sum", Box::new(|r| reduce(r, "sum"))),
        ("mean", Box::new(|r| reduce(r, "mean"))),
        ("max", Box::new(|r| reduce(r, "max"))),
    ];
    v.push((
        "reshape",
        Box::new(|r| {
            let x = random_tensor(&dims(r, 3, 4), r.random());
            let n = x.numel();
            Case {
                reference: values(&x),
                inputs: vec![x],
                op: Box::new(move |t| t[0].reshape(&[n])?.mul_scalar(1.0)),
            }
        }),
    ));
    v.push((
        "permute",
        Box::new(|r| {
            let shape = dims(r, 3, 4);
            let x = random_tensor(&shape, r.random());
            let reference = spec::elementwise::permute(&values(&x), &shape, &[2, 0, 1]);
            // `contiguous` forces the strided gather the next kernel would do.
            Case {
                inputs: vec![x],
                op: Box::new(|t| t[0].permute(&[2, 0, 1])?.contiguous()),
                reference,
            }
        }),
    ));
    v.push((
        "transpose",
        Box::new(|r| {
            let shape = dims(r, 2, 5);
            let x = random_tensor(&shape, r.random());
            let reference = spec::elementwise::permute(&values(&x), &shape, &[1, 0]);
            // A non-contiguous input to an elementwise kernel.
            Case {
                inputs: vec![x],
                op: Box::new(|t| t[0].t()?.mul_scalar(1.0)),
                reference,
            }
        }),
    ));
    v.push((
        "narrow",
        Box::new(|r| {
            let shape = [r.random_range(1..=3), r.random_range(3..=6)];
            let x = random_tensor(&shape, r.random());
            let xv = values(&x);
            let reference = (0..shape[0])
                .flat_map(|i| xv[i * shape[1] + 1..i * shape[1] + 3].to_vec())
                .collect();
            Case {
                inputs: vec![x],
                op: Box::new(|t| t[0].narrow(1, 1, 2)?.mul_scalar(1.0)),
                reference,
            }
        }),
    ));
    v.push((
        "concat",
        Box::new(|r| {
            let (rows, ca, cb) = (
                r.random_range(1..=3),
                r.random_range(1..=3),
                r.random_range(1..=3),
            );
            let (a, b) = (
                random_tensor(&[rows, ca], r.random()),
                random_tensor(&[rows, cb], r.random()),
            );
            let (av, bv) = (values(&a), values(&b));
            let reference = (0..rows)
                .flat_map(|i| {
                    av[i * ca..(i + 1) * ca]
                        .iter()
                        .chain(&bv[i * cb..(i + 1) * cb])
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            Case {
                inputs: vec![a, b],
                op: Box::new(|t| Tensor::concat(&[&t[0], &t[1]], 1)),
                reference,
            }
        }),
    ));
    v.push((
        "matmul",
        Box::new(|r| {
            let (batch, m, k, n) = (
                r.random_range(1..=3),
                r.random_range(1..=5),
                r.random_range(1..=5),
                r.random_range(1..=5),
            );
            let (a, b) = (
                random_tensor(&[batch, m, k], r.random()),
                random_tensor(&[batch, k, n], r.random()),
            );
            let reference = spec::matmul::matmul(&values(&a), &values(&b), batch, m, k, n);
            Case {
                inputs: vec![a, b],
                op: Box::new(|t| t[0].matmul(&t[1])),
                reference,
            }
        }),
    ));
    for (name, log) in [("softmax", false), ("log_softmax", true)] {
        v.push((
            name,
            Box::new(move |r| {
                let shape = dims(r, 3, 4);
                let x = random_tensor(&shape, r.random());
                let reference =
                    spec::softmax::softmax(&values(&x), shape[0], shape[1], shape[2], log);
                let op: OpFn = if log {
                    Box::new(|t| t[0].log_softmax(1))
                } else {
                    Box::new(|t| t[0].softmax(1))
                };
                Case {
                    inputs: vec![x],
                    op,
                    reference,
                }
            }),
        ));
    }
    v.push((
        "cross_entropy",
        Box::new(|r| {
            let (batch, classes) = (r.random_range(1..=4), r.random_range(2..=6));
            let x = random_tensor(&[batch, classes], r.random());
            let labels: Vec<u32> = (0..batch)
                .map(|_| r.random_range(0..classes as u32))
                .collect();
            let smoothing = if r.random_bool(0.5) { 0.0 } else { 0.1 };
            let reference = vec![spec::softmax::cross_entropy(
                &values(&x),
                batch,
                classes,
                &labels,
                smoothing,
            )];
            Case {
                inputs: vec![x],
                op: Box::new(move |t| t[0].cross_entropy(&labels, smoothing)),
                reference,
            }
        }),
    ));
    v.push(("conv2d", Box::new(conv2d)));
    v.push(("batch_norm2d (train)", Box::new(|r| batch_norm(r, true))));
    v.push(("batch_norm2d (eval)", Box::new(|r| batch_norm(r, false))));
    v.push(("max_pool2d", Box::new(|r| pool(r, true))));
    v.push(("avg_pool2d", Box::new(|r| pool(r, false))));
    v.push((
        "global_avg_pool2d",
        Box::new(|r| {
            let shape = [
                r.random_range(1..=2),
                r.random_range(1..=3),
                r.random_range(1..=4),
                r.random_range(1..=4),
            ];
            let x = random_tensor(&shape, r.random());
            let plane = shape[2] * shape[3];
            let reference = spec::reduce::reduce(&values(&x), shape[0] * shape[1], plane, 1, false)
                .into_iter()
                .map(|s| s / plane as f64)
                .collect();
            Case {
                inputs: vec![x],
                op: Box::new(|t| t[0].global_avg_pool2d()),
                reference,
            }
        }),
    ));
    v.push(("linear", Box::new(|r| grouped_linear(r, Some(1)))));
    v.push(("grouped_linear", Box::new(|r| grouped_linear(r, None))));
    v
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
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(
            0.0,
            |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
        )
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
