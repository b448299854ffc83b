//! Random cases of every op for the self-test: f64 inputs, the op as a function of them, and
//! the output the reference loops of `senet_spec` give. Unary ops come from
//! `UnaryOp::ALL`; layer geometries from the generators of `senet_spec::cases`, the same ones
//! the proptest strategies use.
use super::{random_tensor, uniform_tensor};
use crate::{BatchNormOptions, Conv2dOptions, Pool2dOptions, Result, RunningStats, Tensor};
use rand::rngs::StdRng;
use rand::Rng;
use senet_spec::batchnorm::BnShape;
use senet_spec::cases::{conv2d_random, grouped_linear_random, pool2d_random, RANDOM_DRAWS};
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use senet_spec::reduce::ReduceOp;
use senet_spec::{batchnorm, conv2d, elementwise, grouped_linear, matmul, pool, reduce, softmax};

pub(crate) type OpFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// One random case: f64 inputs, the op as a function of them, and the reference output.
pub(crate) struct Case {
    pub inputs: Vec<Tensor>,
    pub op: OpFn,
    pub reference: Vec<f64>,
}

impl Case {
    fn new(inputs: Vec<Tensor>, op: OpFn, reference: Vec<f64>) -> Case {
        Case {
            inputs,
            op,
            reference,
        }
    }
}

pub(crate) type Generator = Box<dyn Fn(&mut StdRng) -> Case>;
/// A named generator that needs no parameters.
type Plain = (&'static str, fn(&mut StdRng) -> Case);

/// Every op, named, with a generator of random cases.
pub(crate) fn ops() -> Vec<(&'static str, Generator)> {
    let mut v: Vec<(&'static str, Generator)> = Vec::new();
    let mut add = |name: &'static str, g: Generator| v.push((name, g));
    for (name, op) in [
        ("add", BinaryOp::Add),
        ("sub", BinaryOp::Sub),
        ("mul", BinaryOp::Mul),
        ("div", BinaryOp::Div),
    ] {
        add(name, Box::new(move |r| binary(r, op)));
    }
    for op in UnaryOp::ALL {
        add(op.name(), Box::new(move |r| unary(r, op)));
    }
    for which in ["sum", "mean", "max"] {
        add(which, Box::new(move |r| reduction(r, which)));
    }
    let layout_ops: &[Plain] = &[
        ("reshape", reshape),
        ("permute", permute),
        ("transpose", transpose),
        ("narrow", narrow),
        ("concat", concat),
    ];
    let layers: &[Plain] = &[
        ("matmul", matmul_case),
        ("softmax", |r| softmax_case(r, false)),
        ("log_softmax", |r| softmax_case(r, true)),
        ("cross_entropy", cross_entropy),
        ("conv2d", conv2d_case),
        ("batch_norm2d (train)", |r| batch_norm(r, true)),
        ("batch_norm2d (eval)", |r| batch_norm(r, false)),
        ("max_pool2d", |r| pool_case(r, true)),
        ("avg_pool2d", |r| pool_case(r, false)),
        ("global_avg_pool2d", global_avg_pool),
        ("linear", |r| grouped_linear_case(r, true)),
        ("grouped_linear", |r| grouped_linear_case(r, false)),
    ];
    for &(name, g) in layout_ops.iter().chain(layers) {
        add(name, Box::new(g));
    }
    v
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().expect("reading a CPU tensor")
}

/// A random shape of `rank` with dims in `1..=max`.
fn dims(rng: &mut StdRng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=max)).collect()
}

fn draws(rng: &mut StdRng) -> Vec<u32> {
    (0..RANDOM_DRAWS).map(|_| rng.random()).collect()
}

fn binary(rng: &mut StdRng, op: BinaryOp) -> Case {
    let rank = rng.random_range(1..=4);
    let a_shape = dims(rng, rank, 4);
    // The right operand broadcasts: some axes set to 1, sometimes fewer axes.
    let drop = rng.random_range(0..a_shape.len());
    let b_shape: Vec<usize> = a_shape[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.4) { 1 } else { d })
        .collect();
    let a = random_tensor(&a_shape, rng.random());
    let b = if op == BinaryOp::Div {
        uniform_tensor(&b_shape, 0.5, 2.0, rng.random())
    } else {
        random_tensor(&b_shape, rng.random())
    };
    let (ref_a, ref_b) = (values(&a), values(&b));
    let (out, _) =
        elementwise::broadcast_binary(&ref_a, &a_shape, &ref_b, &b_shape, |x, y| op.apply(x, y));
    let f: fn(&Tensor, &Tensor) -> Result<Tensor> = match op {
        BinaryOp::Add => Tensor::add,
        BinaryOp::Sub => Tensor::sub,
        BinaryOp::Mul => Tensor::mul,
        BinaryOp::Div => Tensor::div,
        BinaryOp::Eq => Tensor::eq_mask,
        BinaryOp::Maximum => Tensor::maximum,
        BinaryOp::ReluGrad => Tensor::relu_grad,
    };
    Case::new(vec![a, b], Box::new(move |t| f(&t[0], &t[1])), out)
}

fn unary(rng: &mut StdRng, op: UnaryOp) -> Case {
    let rank = rng.random_range(1..=3);
    let shape = dims(rng, rank, 5);
    let (low, high) = op.test_inputs();
    let x = uniform_tensor(&shape, low, high, rng.random());
    let out = values(&x).into_iter().map(|v| op.apply(v)).collect();
    Case::new(vec![x], Box::new(move |t| t[0].unary(op)), out)
}

/// A reduction over a random non-empty set of axes of a rank-3 tensor.
fn reduction(rng: &mut StdRng, which: &'static str) -> Case {
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
    let moved = elementwise::permute(&values(&x), &shape, &perm);
    let outer: usize = kept.iter().map(|&a| shape[a]).product();
    let red: usize = axes.iter().map(|&a| shape[a]).product();
    let op = if which == "max" {
        ReduceOp::Max
    } else {
        ReduceOp::Sum
    };
    let mut reference = reduce::reduce(&moved, outer, red, 1, op);
    if which == "mean" {
        reference.iter_mut().for_each(|v| *v /= red as f64);
    }
    let op: OpFn = match which {
        "sum" => Box::new(move |t| t[0].sum(&axes, false)),
        "mean" => Box::new(move |t| t[0].mean(&axes, false)),
        _ => Box::new(move |t| t[0].max(&axes, true)),
    };
    Case::new(vec![x], op, reference)
}

fn reshape(r: &mut StdRng) -> Case {
    let x = random_tensor(&dims(r, 3, 4), r.random());
    let n = x.numel();
    let reference = values(&x);
    Case::new(
        vec![x],
        Box::new(move |t| t[0].reshape(&[n])?.mul_scalar(1.0)),
        reference,
    )
}

fn permute(r: &mut StdRng) -> Case {
    let shape = dims(r, 3, 4);
    let x = random_tensor(&shape, r.random());
    let reference = elementwise::permute(&values(&x), &shape, &[2, 0, 1]);
    // `contiguous` forces the strided gather the next kernel would do.
    let op: OpFn = Box::new(|t| t[0].permute(&[2, 0, 1])?.contiguous());
    Case::new(vec![x], op, reference)
}

fn transpose(r: &mut StdRng) -> Case {
    let shape = dims(r, 2, 5);
    let x = random_tensor(&shape, r.random());
    let reference = elementwise::permute(&values(&x), &shape, &[1, 0]);
    // A non-contiguous input to an elementwise kernel.
    Case::new(vec![x], Box::new(|t| t[0].t()?.mul_scalar(1.0)), reference)
}

fn narrow(r: &mut StdRng) -> Case {
    let shape = [r.random_range(1..=3), r.random_range(3..=6)];
    let x = random_tensor(&shape, r.random());
    let xv = values(&x);
    let reference = (0..shape[0])
        .flat_map(|i| xv[i * shape[1] + 1..i * shape[1] + 3].to_vec())
        .collect();
    let op: OpFn = Box::new(|t| t[0].narrow(1, 1, 2)?.mul_scalar(1.0));
    Case::new(vec![x], op, reference)
}

fn concat(r: &mut StdRng) -> Case {
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
            let row_a = &av[i * ca..(i + 1) * ca];
            row_a.iter().chain(&bv[i * cb..(i + 1) * cb]).copied()
        })
        .collect();
    let op: OpFn = Box::new(|t| Tensor::concat(&[&t[0], &t[1]], 1));
    Case::new(vec![a, b], op, reference)
}

fn matmul_case(r: &mut StdRng) -> Case {
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
    let reference = matmul::matmul(&values(&a), &values(&b), batch, m, k, n);
    Case::new(vec![a, b], Box::new(|t| t[0].matmul(&t[1])), reference)
}

fn softmax_case(r: &mut StdRng, log: bool) -> Case {
    let shape = dims(r, 3, 4);
    let x = random_tensor(&shape, r.random());
    let reference = softmax::softmax(&values(&x), shape[0], shape[1], shape[2], log);
    let op: OpFn = if log {
        Box::new(|t| t[0].log_softmax(1))
    } else {
        Box::new(|t| t[0].softmax(1))
    };
    Case::new(vec![x], op, reference)
}

fn cross_entropy(r: &mut StdRng) -> Case {
    let (batch, classes) = (r.random_range(1..=4), r.random_range(2..=6));
    let x = random_tensor(&[batch, classes], r.random());
    let labels: Vec<u32> = (0..batch)
        .map(|_| r.random_range(0..classes as u32))
        .collect();
    let smoothing = if r.random_bool(0.5) { 0.0 } else { 0.1 };
    let loss = softmax::cross_entropy(&values(&x), batch, classes, &labels, smoothing);
    let op: OpFn = Box::new(move |t| t[0].cross_entropy(&labels, smoothing));
    Case::new(vec![x], op, vec![loss])
}

fn conv2d_case(rng: &mut StdRng) -> Case {
    let (g, with_bias) = conv2d_random(&draws(rng));
    let x = random_tensor(&[g.batch, g.in_channels, g.in_h, g.in_w], rng.random());
    let w_shape = [
        g.out_channels,
        g.in_channels / g.groups,
        g.kernel.0,
        g.kernel.1,
    ];
    let w = random_tensor(&w_shape, rng.random());
    let b = random_tensor(&[g.out_channels], rng.random());
    let bias = with_bias.then(|| values(&b));
    let reference = conv2d::conv2d_forward(&g, &values(&x), &values(&w), bias.as_deref());
    let opts = Conv2dOptions {
        stride: g.stride,
        padding: g.padding,
        dilation: g.dilation,
        groups: g.groups,
    };
    let mut inputs = vec![x, w];
    inputs.extend(with_bias.then_some(b));
    let op: OpFn = Box::new(move |t| t[0].conv2d(&t[1], t.get(2), opts));
    Case::new(inputs, op, reference)
}

fn batch_norm(rng: &mut StdRng, training: bool) -> Case {
    let (n, c) = (rng.random_range(1..=3), rng.random_range(1..=3));
    let (h, w) = (rng.random_range(1..=3), rng.random_range(2..=3));
    let s = BnShape { n, c, hw: h * w };
    let x = random_tensor(&[n, c, h, w], rng.random());
    let weight = uniform_tensor(&[c], 0.5, 1.5, rng.random());
    let bias = random_tensor(&[c], rng.random());
    let mean = random_tensor(&[c], rng.random());
    let var = uniform_tensor(&[c], 0.5, 2.0, rng.random());
    let eps = 1e-5;
    let (xv, wv, bv) = (values(&x), values(&weight), values(&bias));
    let reference = if training {
        batchnorm::batch_norm2d_forward_train(s, &xv, Some(&wv), Some(&bv), eps).y
    } else {
        let (mv, vv) = (values(&mean), values(&var));
        batchnorm::batch_norm2d_forward_eval(s, &xv, Some(&wv), Some(&bv), &mv, &vv, eps)
    };
    let opts = BatchNormOptions {
        training,
        momentum: 0.1,
        eps,
    };
    let op: OpFn = Box::new(move |t| {
        let (dtype, dev) = (t[0].dtype(), t[0].device());
        let mut running = RunningStats {
            mean: mean.to_dtype(dtype)?.to_device(dev)?,
            var: var.to_dtype(dtype)?.to_device(dev)?,
        };
        t[0].batch_norm2d(Some(&t[1]), Some(&t[2]), Some(&mut running), opts)
    });
    Case::new(vec![x, weight, bias], op, reference)
}

fn pool_case(rng: &mut StdRng, max: bool) -> Case {
    let g = pool2d_random(&draws(rng));
    let x = random_tensor(&[g.batch, g.channels, g.in_h, g.in_w], rng.random());
    let opts = Pool2dOptions {
        kernel: g.kernel,
        stride: g.stride,
        padding: g.padding,
    };
    let (reference, op): (_, OpFn) = if max {
        let y = pool::max_pool2d_forward(&g, &values(&x)).0;
        (y, Box::new(move |t| t[0].max_pool2d(opts)))
    } else {
        let y = pool::avg_pool2d_forward(&g, &values(&x));
        (y, Box::new(move |t| t[0].avg_pool2d(opts)))
    };
    Case::new(vec![x], op, reference)
}

fn global_avg_pool(r: &mut StdRng) -> Case {
    let shape = [
        r.random_range(1..=2),
        r.random_range(1..=3),
        r.random_range(1..=4),
        r.random_range(1..=4),
    ];
    let x = random_tensor(&shape, r.random());
    let plane = shape[2] * shape[3];
    let reference = reduce::reduce(&values(&x), shape[0] * shape[1], plane, 1, ReduceOp::Sum)
        .into_iter()
        .map(|s| s / plane as f64)
        .collect();
    Case::new(vec![x], Box::new(|t| t[0].global_avg_pool2d()), reference)
}

/// `linear` (one group, a shared input, weight `[out, in]`) or `grouped_linear`.
fn grouped_linear_case(rng: &mut StdRng, linear: bool) -> Case {
    let mut s = grouped_linear_random(&draws(rng));
    if linear {
        (s.groups, s.shared_input) = (1, true);
    } else {
        // One group would be a linear layer, which has its own row.
        s.groups = s.groups.max(2);
    }
    let x = random_tensor(&[s.batch, s.x_row()], rng.random());
    let with_bias = rng.random_bool(0.7);
    let (k, fo, fi) = (s.groups, s.out_features, s.in_features);
    let w = random_tensor(&[k, fo, fi], rng.random());
    let b = random_tensor(&[k, fo], rng.random());
    let bias = with_bias.then(|| values(&b));
    let reference =
        grouped_linear::grouped_linear_forward(s, &values(&x), &values(&w), bias.as_deref());
    let (w, b) = if linear {
        // Same values, the shapes of a linear layer.
        let w = w
            .reshape(&[fo, fi])
            .expect("one group: [1, fo, fi] holds fo * fi");
        (w, b.reshape(&[fo]).expect("one group: [1, fo] holds fo"))
    } else {
        (w, b)
    };
    let mut inputs = vec![x, w];
    inputs.extend(with_bias.then_some(b));
    let op: OpFn = if linear {
        Box::new(|t| t[0].linear(&t[1], t.get(2)))
    } else {
        Box::new(|t| t[0].grouped_linear(&t[1], t.get(2)))
    };
    Case::new(inputs, op, reference)
}
