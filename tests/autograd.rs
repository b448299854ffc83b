//! The graph itself: what is recorded, how gradients accumulate, custom ops, and that
//! gradcheck catches wrong gradient rules.
use senet::tensor::testing::{gradcheck, random_tensor, GradcheckOptions};
use senet::tensor::{CustomOp, DType};
use senet::{no_grad, Result, Tensor};
use std::slice::from_ref as one;
use std::sync::Arc;

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().unwrap()
}

#[test]
fn gradient_of_a_small_expression_by_hand() {
    // f = sum(x * y + x), df/dx = y + 1, df/dy = x
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])
        .unwrap()
        .requires_grad();
    let y = Tensor::from_vec(vec![4.0f32, 5.0, 6.0], &[3])
        .unwrap()
        .requires_grad();
    let f = x.mul(&y).unwrap().add(&x).unwrap().sum_all().unwrap();
    assert_eq!(f.item().unwrap(), 4.0 + 1.0 + 10.0 + 2.0 + 18.0 + 3.0);
    let g = f.backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![5.0, 6.0, 7.0]);
    assert_eq!(vals(g.get(&y).unwrap()), vec![1.0, 2.0, 3.0]);
}

#[test]
fn a_tensor_used_twice_accumulates_its_gradient() {
    // d/dx sum(x*x) = 2x, reached through both operands of the same mul.
    let x = Tensor::from_vec(vec![-1.0f32, 0.5, 2.0], &[3])
        .unwrap()
        .requires_grad();
    let g = x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![-2.0, 1.0, 4.0]);
}

#[test]
fn broadcast_operand_gets_the_summed_gradient() {
    // x [2,3] + b [3]: db = column sums of the incoming gradient (all ones here) = 2.
    let x = Tensor::zeros(&[2, 3]).requires_grad();
    let b = Tensor::zeros(&[3]).requires_grad();
    let g = x.add(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&b).unwrap()), vec![2.0, 2.0, 2.0]);
    assert_eq!(g.get(&x).unwrap().shape(), &[2, 3]);
}

#[test]
fn max_splits_the_gradient_between_ties() {
    let x = Tensor::from_vec(vec![1.0f32, 3.0, 3.0, 0.0], &[4])
        .unwrap()
        .requires_grad();
    let g = x.max(&[0], false).unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![0.0, 0.5, 0.5, 0.0]);
}

#[test]
fn no_grad_records_nothing() {
    let x = Tensor::ones(&[2, 2]).requires_grad();
    let y = no_grad(|| x.mul(&x).unwrap().exp().unwrap());
    assert!(y.op().is_none());
    assert!(!y.tracks_grad());
    assert!(y.sum_all().unwrap().backward().is_err());
    // Recording resumes after the scope.
    let z = x.mul(&x).unwrap();
    assert!(z.op().is_some());
}

#[test]
fn tensors_without_requires_grad_record_nothing() {
    let a = Tensor::ones(&[3]);
    let b = a.add(&a).unwrap().tanh().unwrap();
    assert!(
        b.op().is_none(),
        "no input needs a gradient, so no graph is kept"
    );
}

#[test]
fn detach_cuts_the_graph() {
    let x = Tensor::from_vec(vec![2.0f32], &[1])
        .unwrap()
        .requires_grad();
    // f = x * detach(x): only the first factor carries a gradient, df/dx = detach(x) = 2.
    let f = x.mul(&x.detach()).unwrap().sum_all().unwrap();
    let g = f.backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![2.0]);
}

#[test]
fn backward_can_run_twice_and_only_leaves_get_gradients() {
    let x = random_tensor(&[4], 1).requires_grad();
    let h = x.tanh().unwrap();
    let f = h.sum_all().unwrap();
    let g1 = f.backward().unwrap();
    let g2 = f.backward().unwrap();
    assert_eq!(vals(g1.get(&x).unwrap()), vals(g2.get(&x).unwrap()));
    assert!(g1.get(&h).is_none());
    assert_eq!(g1.len(), 1);
}

#[test]
fn backward_needs_a_scalar_or_a_seed() {
    let x = Tensor::ones(&[2]).requires_grad();
    let y = x.mul_scalar(3.0).unwrap();
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("[2]"), "{err}");
    let g = y
        .backward_with(&Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap())
        .unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![3.0, 6.0]);
}

#[test]
fn a_very_deep_graph_neither_overflows_in_backward_nor_in_drop() {
    let x = Tensor::ones(&[1]).requires_grad();
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.add_scalar(1.0).unwrap();
    }
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![1.0]);
    drop(y);
}

#[test]
fn dtype_conversion_is_differentiable() {
    let x = random_tensor(&[3], 4)
        .to_dtype(DType::F32)
        .unwrap()
        .requires_grad();
    let f = x
        .to_dtype(DType::F64)
        .unwrap()
        .mul_scalar(2.0)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = f.backward().unwrap();
    let gx = g.get(&x).unwrap();
    assert_eq!(gx.dtype(), DType::F32);
    assert_eq!(vals(gx), vec![2.0; 3]);
}

/// softplus(x) = ln(1 + e^x), computed from the raw values; its derivative is sigmoid(x).
struct Softplus {
    /// Deliberately wrong rules, to show that gradcheck catches them.
    bug: Option<&'static str>,
}

impl CustomOp for Softplus {
    fn name(&self) -> &str {
        "softplus"
    }
    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        let y: Vec<f64> = x
            .to_vec::<f64>()?
            .into_iter()
            .map(|v| v.exp().ln_1p())
            .collect();
        Tensor::from_vec(y, x.shape())?.to_dtype(x.dtype())
    }
    fn backward(
        &self,
        inputs: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let s = inputs[0].sigmoid()?;
        Ok(vec![Some(match self.bug {
            None => grad.mul(&s)?,
            Some("ignores incoming gradient") => s,
            Some(_) => grad.mul(&s)?.mul_scalar(1.01)?,
        })])
    }
}

#[test]
fn custom_op_joins_the_graph_and_passes_gradcheck() {
    let op = Arc::new(Softplus { bug: None });
    let x = random_tensor(&[3, 4], 11);
    let report = gradcheck(
        |t| Tensor::apply_custom(op.clone(), &[&t[0]])?.mul(&t[0]),
        &[x],
        GradcheckOptions::default(),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
    let y = Tensor::apply_custom(op, &[&Tensor::zeros(&[1]).requires_grad()]).unwrap();
    assert_eq!(y.op().unwrap().name(), "softplus");
    assert!((y.item().unwrap() - 2f64.ln()).abs() < 1e-6);
}

#[test]
fn gradcheck_catches_wrong_rules() {
    let x = random_tensor(&[5], 3);
    for bug in ["ignores incoming gradient", "off by one percent"] {
        let op = Arc::new(Softplus { bug: Some(bug) });
        let report = gradcheck(
            |t| Tensor::apply_custom(op.clone(), &[&t[0]]),
            one(&x),
            GradcheckOptions::default(),
        )
        .unwrap();
        assert!(
            !report.passed(),
            "gradcheck should fail a rule that {bug}: {report}"
        );
        assert!(report.worst.is_some());
    }
}

#[test]
fn custom_op_with_the_wrong_number_of_gradients_is_an_error() {
    struct Bad;
    impl CustomOp for Bad {
        fn name(&self) -> &str {
            "bad"
        }
        fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
            Ok(inputs[0].clone())
        }
        fn backward(&self, _: &[&Tensor], _: &Tensor, _: &Tensor) -> Result<Vec<Option<Tensor>>> {
            Ok(vec![])
        }
    }
    let x = Tensor::ones(&[2]).requires_grad();
    let err = Tensor::apply_custom(Arc::new(Bad), &[&x])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad") && err.contains("0 gradients for 1 inputs"),
        "{err}"
    );
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // A conv + batch norm + cross-entropy step run on 1 and on 2 threads gives the same bits.
    let step = || {
        let x = random_tensor(&[9, 3, 8, 8], 1)
            .to_dtype(DType::F32)
            .unwrap();
        let w = random_tensor(&[8, 3, 3, 3], 2)
            .to_dtype(DType::F32)
            .unwrap()
            .requires_grad();
        let y = x
            .conv2d(&w, None, senet::tensor::Conv2dOptions::new(1, 1))
            .unwrap();
        let y = y
            .batch_norm2d(None, None, None, Default::default())
            .unwrap()
            .relu()
            .unwrap();
        let logits = y.global_avg_pool2d().unwrap();
        let loss = logits
            .cross_entropy(&[0, 1, 2, 3, 4, 5, 6, 7, 0], 0.1)
            .unwrap();
        let g = loss.backward().unwrap();
        (
            loss.to_vec::<f32>().unwrap(),
            g.get(&w).unwrap().to_vec::<f32>().unwrap(),
        )
    };
    let on = |threads| rayon_pool(threads).install(step);
    let (a, b) = (on(1), on(2));
    assert_eq!(
        a.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(
        a.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn selftest_passes_every_op() {
    let rows = senet::tensor::testing::selftest::run(1, 42, senet::tensor::Device::Cpu);
    assert!(rows.len() >= 30);
    for r in &rows {
        assert!(
            r.passed(),
            "{}",
            senet::tensor::testing::selftest::format_table(
                std::slice::from_ref(r),
                senet::tensor::Device::Cpu
            )
        );
    }
}

/// `into_relu` overwrites the buffer only when no one else can see it: a lone temporary under
/// no_grad changes in place; a tensor with another handle, or one recording a gradient, is
/// left as it was and gets a new buffer.
#[test]
fn into_relu_works_in_place_only_when_nobody_else_sees_the_buffer() {
    let values = vec![-1.0f32, 2.0, -3.0, 4.0];
    let relu = vec![0.0, 2.0, 0.0, 4.0];
    // Alone, under no_grad: in place, and right.
    let t = Tensor::from_vec(values.clone(), &[4]).unwrap();
    let y = no_grad(|| t.into_relu()).unwrap();
    assert_eq!(vals(&y), relu);
    // Shared: the other handle keeps its values.
    let t = Tensor::from_vec(values.clone(), &[4]).unwrap();
    let keep = t.clone();
    let y = no_grad(|| t.into_relu()).unwrap();
    assert_eq!(vals(&y), relu);
    assert_eq!(vals(&keep), vec![-1.0, 2.0, -3.0, 4.0]);
    // A view (not the whole buffer): the parent keeps its values.
    let parent = Tensor::from_vec(values.clone(), &[4]).unwrap();
    let view = parent.narrow(0, 1, 2).unwrap();
    let y = no_grad(|| view.into_relu()).unwrap();
    assert_eq!(vals(&y), vec![2.0, 0.0]);
    assert_eq!(vals(&parent), vec![-1.0, 2.0, -3.0, 4.0]);
    // Recording a gradient: the input is kept for backward, and the gradient is relu's.
    let x = Tensor::from_vec(values, &[4]).unwrap().requires_grad();
    let y = x.mul_scalar(1.0).unwrap().into_relu().unwrap();
    assert_eq!(vals(&y), relu);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn an_elementwise_op_is_named_as_in_the_spec_with_its_scalar() {
    use senet::spec::elementwise::{BinaryOp, UnaryOp};
    let x = Tensor::ones(&[2]).requires_grad();
    let name = |t: Tensor| t.op().unwrap().name();
    assert_eq!(name(x.relu().unwrap()), UnaryOp::Relu.name());
    assert_eq!(name(x.mul_scalar(0.5).unwrap()), "scale(0.5)");
    assert_eq!(name(x.add_scalar(1.0).unwrap()), "add_scalar(1.0)");
    assert_eq!(name(x.mul(&x).unwrap()), BinaryOp::Mul.name());
}
