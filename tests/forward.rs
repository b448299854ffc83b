//! Forward results: small examples computed by hand, and the layer ops through the `Tensor`
//! API (including non-contiguous inputs) against the naive loops of `senet_spec`.
use proptest::prelude::*;
use senet::spec;
use senet::spec::batchnorm::BnShape;
use senet::spec::conv2d::Conv2dGeometry;
use senet::spec::pool::Pool2dGeometry;
use senet::tensor::testing::assert_close;
use senet::tensor::testing::random_tensor;
use senet::tensor::testing::strategies::{conv2d_case, non_contiguous, pool2d_case};
use senet::tensor::{BatchNormOptions, Conv2dOptions, DType, Pool2dOptions};
use senet::Tensor;

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().unwrap()
}

fn t32(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn conv2d_by_hand() {
    // 1x1x3x3 input 1..9, 2x2 kernel of ones, stride 1: each output is the sum of a 2x2 window.
    let x = t32((1..=9).map(|v| v as f32).collect(), &[1, 1, 3, 3]);
    let w = Tensor::ones(&[1, 1, 2, 2]);
    let y = x
        .conv2d(&w, Some(&t32(vec![0.5], &[1])), Conv2dOptions::default())
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(vals(&y), vec![12.5, 16.5, 24.5, 28.5]);
    // Padding 1, stride 2: corners see only the 2x2 in-bounds part of their window.
    let y = x.conv2d(&w, None, Conv2dOptions::new(2, 1)).unwrap();
    assert_eq!(vals(&y), vec![1.0, 5.0, 11.0, 28.0]);
    // Depthwise (groups = 2): each channel has its own kernel.
    let x2 = Tensor::concat(&[&x, &x.mul_scalar(10.0).unwrap()], 1).unwrap();
    let w2 = t32(vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 1, 2, 2]);
    let y = x2
        .conv2d(&w2, None, Conv2dOptions::default().groups(2))
        .unwrap();
    assert_eq!(vals(&y), vec![1.0, 2.0, 4.0, 5.0, 50.0, 60.0, 80.0, 90.0]);
    // Dilation 2 on a 3x3 input with a 2x2 kernel reads the four corners.
    let y = x
        .conv2d(&w, None, Conv2dOptions::default().dilation(2))
        .unwrap();
    assert_eq!(vals(&y), vec![1.0 + 3.0 + 7.0 + 9.0]);
}

#[test]
fn pooling_by_hand() {
    let x = t32((1..=16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    let y = x.max_pool2d(Pool2dOptions::new(2, 2, 0)).unwrap();
    assert_eq!(vals(&y), vec![6.0, 8.0, 14.0, 16.0]);
    let y = x.avg_pool2d(Pool2dOptions::new(2, 2, 0)).unwrap();
    assert_eq!(vals(&y), vec![3.5, 5.5, 11.5, 13.5]);
    // 3x3 window, stride 2, padding 1 (the ImageNet stem's max pool): padding never wins a max.
    let neg = x.neg().unwrap();
    let y = neg.max_pool2d(Pool2dOptions::new(3, 2, 1)).unwrap();
    assert_eq!(vals(&y), vec![-1.0, -2.0, -5.0, -6.0]);
    // Average pooling counts the padded zeros: top-left window holds 1,2,5,6 and five zeros.
    let y = x.avg_pool2d(Pool2dOptions::new(3, 2, 1)).unwrap();
    assert!((vals(&y)[0] - 14.0 / 9.0).abs() < 1e-6);
    let y = x.global_avg_pool2d().unwrap();
    assert_eq!(y.shape(), &[1, 1]);
    assert_eq!(vals(&y), vec![8.5]);
}

#[test]
fn batch_norm_by_hand() {
    // One channel holding 1, 2, 3, 4: mean 2.5, biased variance 1.25.
    let x = t32(vec![1.0, 2.0, 3.0, 4.0], &[2, 1, 1, 2]);
    let y = x
        .batch_norm2d(
            Some(&t32(vec![2.0], &[1])),
            Some(&t32(vec![1.0], &[1])),
            None,
            BatchNormOptions {
                eps: 0.0001,
                ..Default::default()
            },
        )
        .unwrap();
    let s = (1.25f64 + 0.0001).sqrt();
    let want: Vec<f64> = [1.0, 2.0, 3.0, 4.0]
        .iter()
        .map(|v| 2.0 * (v - 2.5) / s + 1.0)
        .collect();
    assert_close("batch_norm_by_hand", &vals(&y), &want, 1e-6);
}

#[test]
fn softmax_cross_entropy_and_matmul_by_hand() {
    let x = t32(vec![0.0, (2f32).ln(), 0.0, 0.0], &[2, 2]);
    assert_close(
        "softmax",
        &vals(&x.softmax(1).unwrap()),
        &[1.0 / 3.0, 2.0 / 3.0, 0.5, 0.5],
        1e-6,
    );
    // Loss of labels [1, 0]: (-ln(2/3) - ln(1/2)) / 2.
    let loss = x.cross_entropy(&[1, 0], 0.0).unwrap().item().unwrap();
    assert!((loss - (-(2f64 / 3.0).ln() - 0.5f64.ln()) / 2.0).abs() < 1e-6);
    // With smoothing 0.2 over 2 classes the targets are 0.9 / 0.1.
    let smooth = x.cross_entropy(&[1, 0], 0.2).unwrap().item().unwrap();
    let want = (-(0.9 * (2f64 / 3.0).ln() + 0.1 * (1f64 / 3.0).ln()) - (0.5f64).ln()) / 2.0;
    assert!((smooth - want).abs() < 1e-6, "{smooth} vs {want}");
    let a = t32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t32(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
    assert_eq!(vals(&a.matmul(&b).unwrap()), vec![4.0, 5.0, 10.0, 11.0]);
    assert_eq!(
        vals(&a.t().unwrap().contiguous().unwrap()),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
}

#[test]
fn grouped_linear_by_hand() {
    // Two groups of 1 -> 1 features: y = [x0 * 2 + 1, x1 * 3 - 1].
    let x = t32(vec![1.0, 10.0], &[1, 2]);
    let w = t32(vec![2.0, 3.0], &[2, 1, 1]);
    let b = t32(vec![1.0, -1.0], &[2, 1]);
    assert_eq!(
        vals(&x.grouped_linear(&w, Some(&b)).unwrap()),
        vec![3.0, 29.0]
    );
    // A shared input [1, 1] feeds both groups.
    let shared = t32(vec![5.0], &[1, 1]);
    assert_eq!(
        vals(&shared.grouped_linear(&w, Some(&b)).unwrap()),
        vec![11.0, 14.0]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_matches_naive_loops_even_on_non_contiguous_input(case in conv2d_case(), seed in any::<u64>()) {
        let x = random_tensor(&case.input, seed);
        let w = random_tensor(&case.weight, seed ^ 1);
        let b = random_tensor(&case.weight[..1], seed ^ 2);
        let o = case.options;
        let g = Conv2dGeometry {
            batch: case.input[0], in_channels: case.input[1], in_h: case.input[2], in_w: case.input[3],
            out_channels: case.weight[0], kernel: (case.weight[2], case.weight[3]),
            stride: o.stride, padding: o.padding, dilation: o.dilation, groups: o.groups,
        };
        let want = spec::conv2d::conv2d_forward(&g, &vals(&x), &vals(&w), case.bias.then(|| vals(&b)).as_deref());
        // NHWC buffer seen as NCHW: a non-contiguous input to the fast kernel, in f32.
        let nhwc = x.permute(&[0, 2, 3, 1]).unwrap().contiguous().unwrap().permute(&[0, 3, 1, 2]).unwrap();
        prop_assert!(!nhwc.is_contiguous() || case.input[1] == 1 || case.input[2] * case.input[3] == 1);
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let y = f(&nhwc).conv2d(&f(&w), case.bias.then(|| f(&b)).as_ref(), o).unwrap();
        prop_assert_eq!(y.shape(), &[g.batch, g.out_channels, g.out_h(), g.out_w()][..]);
        assert_close("conv2d_matches_naive_loops_even_on_non_contiguous_input", &vals(&y), &want, 1e-5);
    }

    #[test]
    fn pools_match_naive_loops((case, x) in pool2d_case().prop_flat_map(|c| (Just(c.clone()), non_contiguous(c.input)))) {
        // `x` is a permuted view of a buffer holding the axes in reverse order.
        let o = case.options;
        let g = Pool2dGeometry { batch: case.input[0], channels: case.input[1], in_h: case.input[2], in_w: case.input[3], kernel: o.kernel, stride: o.stride, padding: o.padding };
        let xv = vals(&x);
        let x32 = x.to_dtype(DType::F32).unwrap();
        assert_close("pools_match_naive_loops", &vals(&x32.max_pool2d(o).unwrap()), &spec::pool::max_pool2d_forward(&g, &x32.to_vec::<f64>().unwrap()).0, 0.0);
        assert_close("pools_match_naive_loops", &vals(&x32.avg_pool2d(o).unwrap()), &spec::pool::avg_pool2d_forward(&g, &xv), 1e-6);
    }

    #[test]
    fn batch_norm_matches_naive_loops(n in 1usize..=4, c in 1usize..=4, hw in 2usize..=9, seed in any::<u64>()) {
        let x = random_tensor(&[n, c, 1, hw], seed).mul_scalar(3.0).unwrap().add_scalar(5.0).unwrap();
        let s = BnShape { n, c, hw };
        let want = spec::batchnorm::batch_norm2d_forward_train(s, &vals(&x), None, None, 1e-5).y;
        let y = x.to_dtype(DType::F32).unwrap().batch_norm2d(None, None, None, BatchNormOptions::default()).unwrap();
        assert_close("batch_norm_matches_naive_loops", &vals(&y), &want, 1e-5);
    }
}
