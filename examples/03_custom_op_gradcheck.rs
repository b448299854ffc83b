//! Define an op of your own and property-test its gradient with the public API.
//! Run it with `cargo run --release --example 03_custom_op_gradcheck`. Before: `02_autograd`.
//!
//! The op is `swish(x) = x * sigmoid(beta * x)`, written directly on the CPU values (as an op
//! backed by some external routine would be), with its gradient rule stated by hand:
//! `d swish / dx = s + beta * x * s * (1 - s)` where `s = sigmoid(beta * x)`.
//!
//! A [`CustomOp`] supplies the two halves every built-in op has: `forward` (the values) and
//! `backward` (the gradient rule: given the gradient of the loss with respect to the output,
//! return the gradient with respect to each input). `Tensor::apply_custom` runs `forward` and,
//! when gradients are being recorded, puts the op in the graph, so `backward()` calls its rule
//! at the right moment. A hand-written rule is easy to get wrong, hence `gradcheck`: it compares
//! the rule with central differences, `(f(x + eps) - f(x - eps)) / 2 eps`, in f64.
use proptest::test_runner::{Config, RngSeed, TestRunner};
use senet::tensor::testing::strategies::any_tensor;
use senet::tensor::testing::{gradcheck, GradcheckOptions};
use senet::tensor::CustomOp;
use senet::{Result, Tensor};
use std::sync::Arc;

struct Swish {
    beta: f64,
}

impl CustomOp for Swish {
    /// What the graph calls the op (`Op::name`, see `print_graph` in 02_autograd).
    fn name(&self) -> &str {
        "swish"
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = inputs[0];
        let values: Vec<f64> = x
            .to_vec::<f64>()?
            .iter()
            .map(|&v| v / (1.0 + (-self.beta * v).exp()))
            .collect();
        // Give the output the input's dtype so the op works in f32 and in f64 (gradcheck).
        Tensor::from_vec(values, x.shape())?.to_dtype(x.dtype())
    }

    fn backward(
        &self,
        inputs: &[&Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        // Written with tensor ops, so it would run on any device. One entry per input; `None`
        // for an input that needs no gradient.
        let x = inputs[0];
        let s = x.mul_scalar(self.beta)?.sigmoid()?;
        let ds = s
            .mul(&s.neg()?.add_scalar(1.0)?)?
            .mul(x)?
            .mul_scalar(self.beta)?;
        Ok(vec![Some(grad.mul(&s.add(&ds)?)?)])
    }
}

fn main() {
    let swish = Arc::new(Swish { beta: 1.5 });

    // Use it like any op: it joins the graph and `backward` calls its rule.
    let x = Tensor::from_vec(vec![-1.0f32, 0.0, 2.0], &[3])
        .unwrap()
        .requires_grad();
    let y = Tensor::apply_custom(swish.clone(), &[&x]).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    println!(
        "swish({:?}) = {:?}",
        x.to_vec::<f32>().unwrap(),
        y.to_vec::<f32>().unwrap()
    );
    println!(
        "gradient      = {:?}",
        g.get(&x).unwrap().to_vec::<f32>().unwrap()
    );

    // Property test: for random tensors of random shape, the analytic gradient matches
    // central differences (gradcheck puts the op mid-graph, between a random scale and shift).
    // The seed is fixed, so every run draws the same 64 tensors; on a failure, proptest
    // shrinks the tensor to the smallest one that still fails and prints it.
    let mut runner = TestRunner::new(Config {
        cases: 64,
        rng_seed: RngSeed::Fixed(0),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&any_tensor(3, 5), |x| {
        let report = gradcheck(
            |t| Tensor::apply_custom(swish.clone(), &[&t[0]]),
            &[x],
            GradcheckOptions::default(),
        )
        .unwrap();
        proptest::prop_assert!(report.passed(), "{}", report);
        Ok(())
    });
    match result {
        Ok(()) => println!("gradcheck passed on 64 random tensors"),
        Err(e) => {
            eprintln!("gradcheck failed: {e}");
            std::process::exit(1);
        }
    }
}
