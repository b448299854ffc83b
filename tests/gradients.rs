//! Every op's analytic gradient against central differences in f64, on proptest-generated
//! shapes. `gradcheck` places each op mid-graph (`sum(op(x) * R + S)`), so a backward rule that
//! ignored its incoming gradient would fail. Several cases feed the op a non-contiguous view.
use proptest::prelude::*;
use senet::spec::elementwise::UnaryOp;
use senet::tensor::testing::strategies::{
    broadcast_shapes, conv2d_case, grouped_linear_case, pool2d_case, shape,
};
use senet::tensor::testing::{gradcheck, random_tensor, uniform_tensor, GradcheckOptions};
use senet::tensor::{BatchNormOptions, RunningStats};
use senet::{Result, Tensor};
use std::slice::from_ref as one;

fn assert_grad(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
) -> std::result::Result<(), TestCaseError> {
    let report = gradcheck(f, inputs, GradcheckOptions::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.passed(), "{}", report);
    Ok(())
}

proptest! {
    // gradcheck evaluates the function twice per input element: keep the case count modest.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn binary_ops_with_broadcasting((sa, sb) in broadcast_shapes(3, 3), seed in any::<u64>()) {
        let a = random_tensor(&sa, seed);
        let b = random_tensor(&sb, seed ^ 1);
        let positive = uniform_tensor(&sb, 0.5, 2.0, seed ^ 2);
        assert_grad(|t| t[0].add(&t[1]), &[a.clone(), b.clone()])?;
        assert_grad(|t| t[0].sub(&t[1]), &[a.clone(), b.clone()])?;
        assert_grad(|t| t[0].mul(&t[1]), &[a.clone(), b])?;
        assert_grad(|t| t[0].div(&t[1]), &[a, positive])?;
    }

    /// Every unary op of `UnaryOp::ALL`, on inputs from its test range.
    #[test]
    fn unary_ops(s in shape(3, 4), seed in any::<u64>()) {
        for op in UnaryOp::ALL {
            let (low, high) = op.test_inputs();
            let x = uniform_tensor(&s, low, high, seed);
            assert_grad(|t| t[0].unary(op), &[x])?;
        }
        // A chain, and a named method, for good measure.
        let x = random_tensor(&s, seed ^ 1);
        assert_grad(|t| t[0].mul_scalar(-1.5)?.add_scalar(0.25)?.tanh(), &[x])?;
    }

    #[test]
    fn reductions(s in shape(4, 4), mask in prop::collection::vec(any::<bool>(), 4), keepdim in any::<bool>(), seed in any::<u64>()) {
        let x = random_tensor(&s, seed);
        let axes: Vec<usize> = (0..s.len()).filter(|&a| mask[a]).collect();
        assert_grad(|t| t[0].sum(&axes, keepdim), one(&x))?;
        assert_grad(|t| t[0].mean(&axes, keepdim), one(&x))?;
        assert_grad(|t| t[0].max(&axes, keepdim), one(&x))?;
        assert_grad(|t| t[0].sum_all(), &[x])?;
    }

    #[test]
    fn shape_ops(s in shape(3, 4), seed in any::<u64>()) {
        let x = random_tensor(&s, seed);
        let n = x.numel();
        let rank = s.len();
        let reversed: Vec<usize> = (0..rank).rev().collect();
        assert_grad(|t| t[0].reshape(&[n]), one(&x))?;
        assert_grad(|t| t[0].permute(&reversed), one(&x))?;
        // A reshape of a permuted (non-contiguous) view must copy, in the permuted order.
        assert_grad(|t| t[0].permute(&reversed)?.reshape(&[n]), one(&x))?;
        assert_grad(|t| t[0].transpose(0, rank - 1)?.exp(), one(&x))?;
        let last = s[rank - 1];
        let (start, len) = (last / 3, last - last / 3);
        assert_grad(|t| t[0].narrow(rank - 1, start, len), one(&x))?;
        let y = random_tensor(&s, seed ^ 9);
        assert_grad(|t| Tensor::concat(&[&t[0], &t[1], &t[0]], 0), &[x.clone(), y])?;
        // broadcast_as then a kernel reading the stride-0 view.
        let mut wide = vec![2];
        wide.extend(&s);
        assert_grad(|t| t[0].broadcast_as(&wide)?.tanh(), &[x])?;
    }

    #[test]
    fn matmul_batched_broadcast_and_transposed(batch in 1usize..=3, m in 1usize..=4, k in 1usize..=4, n in 1usize..=4, seed in any::<u64>()) {
        let a = random_tensor(&[batch, m, k], seed);
        let b = random_tensor(&[batch, k, n], seed ^ 1);
        let b2 = random_tensor(&[k, n], seed ^ 2);
        assert_grad(|t| t[0].matmul(&t[1]), &[a.clone(), b])?;
        // The right operand broadcasts over the batch.
        assert_grad(|t| t[0].matmul(&t[1]), &[a, b2])?;
        // Non-contiguous left operand: a transposed view.
        let at = random_tensor(&[k, m], seed ^ 3);
        let c = random_tensor(&[k, n], seed ^ 4);
        assert_grad(|t| t[0].t()?.matmul(&t[1]), &[at, c])?;
    }

    #[test]
    fn softmax_family(s in shape(3, 4), axis_pick in any::<prop::sample::Index>(), seed in any::<u64>(), smoothing in prop_oneof![Just(0.0), Just(0.1), Just(0.3)]) {
        let x = random_tensor(&s, seed);
        let axis = axis_pick.index(s.len());
        assert_grad(|t| t[0].softmax(axis), one(&x))?;
        assert_grad(|t| t[0].log_softmax(axis), &[x])?;
        let (batch, classes) = (s[0], s[s.len() - 1].max(2));
        let logits = random_tensor(&[batch, classes], seed ^ 5);
        let labels: Vec<u32> = (0..batch).map(|i| ((seed as usize + i * 7) % classes) as u32).collect();
        assert_grad(|t| t[0].cross_entropy(&labels, smoothing), &[logits])?;
    }

    #[test]
    fn conv2d(case in conv2d_case(), seed in any::<u64>(), channels_last in any::<bool>()) {
        let w = random_tensor(&case.weight, seed ^ 1);
        let b = random_tensor(&case.weight[..1], seed ^ 2);
        let opts = case.options;
        let mut inputs = vec![Tensor::zeros(&[1]), w];
        if case.bias {
            inputs.push(b);
        }
        if channels_last {
            // The input arrives as an NHWC buffer seen through an NCHW (non-contiguous) view.
            let [n, c, h, wd] = case.input[..] else { unreachable!() };
            inputs[0] = random_tensor(&[n, h, wd, c], seed);
            assert_grad(|t| t[0].permute(&[0, 3, 1, 2])?.conv2d(&t[1], t.get(2), opts), &inputs)?;
        } else {
            inputs[0] = random_tensor(&case.input, seed);
            assert_grad(|t| t[0].conv2d(&t[1], t.get(2), opts), &inputs)?;
        }
    }

    #[test]
    fn pooling(case in pool2d_case(), seed in any::<u64>()) {
        let x = random_tensor(&case.input, seed);
        let opts = case.options;
        assert_grad(|t| t[0].max_pool2d(opts), one(&x))?;
        assert_grad(|t| t[0].avg_pool2d(opts), one(&x))?;
        assert_grad(|t| t[0].global_avg_pool2d(), &[x])?;
    }

    #[test]
    fn batch_norm2d(n in 1usize..=3, c in 1usize..=3, h in 1usize..=3, w in 2usize..=3, affine in any::<bool>(), seed in any::<u64>()) {
        let x = random_tensor(&[n, c, h, w], seed);
        let weight = uniform_tensor(&[c], 0.5, 1.5, seed ^ 1);
        let bias = random_tensor(&[c], seed ^ 2);
        let running = RunningStats { mean: random_tensor(&[c], seed ^ 3), var: uniform_tensor(&[c], 0.5, 2.0, seed ^ 4) };
        for training in [true, false] {
            let opts = BatchNormOptions { training, ..Default::default() };
            let r = running.clone();
            if affine {
                assert_grad(|t| t[0].batch_norm2d(Some(&t[1]), Some(&t[2]), Some(&mut r.clone()), opts), &[x.clone(), weight.clone(), bias.clone()])?;
            } else {
                assert_grad(|t| t[0].batch_norm2d(None, None, Some(&mut r.clone()), opts), one(&x))?;
            }
        }
    }

    #[test]
    fn linear_and_grouped_linear(s in grouped_linear_case(), with_bias in any::<bool>(), seed in any::<u64>()) {
        let (batch, k, fin, fout) = (s.batch, s.groups, s.in_features, s.out_features);
        let x = random_tensor(&[batch, s.x_row()], seed);
        let mut inputs = vec![x, random_tensor(&[k, fout, fin], seed ^ 1)];
        if with_bias {
            inputs.push(random_tensor(&[k, fout], seed ^ 2));
        }
        assert_grad(|t| t[0].grouped_linear(&t[1], t.get(2)), &inputs)?;
        let mut inputs = vec![random_tensor(&[batch, fin], seed ^ 3), random_tensor(&[fout, fin], seed ^ 4)];
        if with_bias {
            inputs.push(random_tensor(&[fout], seed ^ 5));
        }
        assert_grad(|t| t[0].linear(&t[1], t.get(2)), &inputs)?;
    }
}
