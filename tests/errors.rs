//! Bad input is an error that names what is wrong — never a panic.
use senet::tensor::{BatchNormOptions, Conv2dOptions, DType, Pool2dOptions, RunningStats};
use senet::Tensor;

fn err(r: senet::Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    }
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

#[test]
fn creation_and_shape_ops() {
    has(
        &err(Tensor::from_vec(vec![1.0f32; 5], &[2, 3])),
        &["5 values", "[2, 3]"],
    );
    let x = Tensor::zeros(&[2, 3]);
    has(&err(x.reshape(&[4, 2])), &["[2, 3]", "[4, 2]"]);
    has(&err(x.permute(&[0, 0])), &["[0, 0]", "permutation"]);
    has(&err(x.narrow(1, 2, 2)), &["2..4", "[2, 3]"]);
    has(&err(x.transpose(0, 5)), &["[2, 3]"]);
    has(
        &err(Tensor::concat(&[&x, &Tensor::zeros(&[3, 3])], 1)),
        &["[2, 3]", "[3, 3]", "axis 1"],
    );
    has(&err(Tensor::concat(&[], 0)), &["at least one"]);
    has(&err(x.sum(&[2], false)), &["[2]", "[2, 3]"]);
    has(&err(x.sum(&[1, 1], false)), &["[1, 1]"]);
    has(&x.item().unwrap_err().to_string(), &["[2, 3]"]);
    has(&err(Tensor::zeros(&[0]).max(&[0], false)), &["empty"]);
}

#[test]
fn mismatched_broadcast_dtype_and_matmul() {
    let a = Tensor::zeros(&[2, 3]);
    has(&err(a.add(&Tensor::zeros(&[4]))), &["add", "[2, 3]", "[4]"]);
    has(
        &err(a.mul(&Tensor::zeros(&[2, 3]).to_dtype(DType::F64).unwrap())),
        &["mul", "F32", "F64"],
    );
    has(
        &err(a.matmul(&Tensor::zeros(&[2, 3]))),
        &["matmul", "[2, 3]", "3 vs 2"],
    );
    has(
        &err(a.matmul(&Tensor::zeros(&[3]))),
        &["at least 2 dimensions", "[3]"],
    );
    has(
        &err(Tensor::zeros(&[2, 2, 3]).matmul(&Tensor::zeros(&[3, 3, 1]))),
        &["[2]", "[3]"],
    );
}

#[test]
fn conv2d_refusals() {
    let x = Tensor::zeros(&[1, 4, 8, 8]);
    has(
        &err(Tensor::zeros(&[4, 8, 8]).conv2d(
            &Tensor::zeros(&[2, 4, 3, 3]),
            None,
            Conv2dOptions::default(),
        )),
        &["input", "4 dimensions", "[4, 8, 8]"],
    );
    has(
        &err(x.conv2d(
            &Tensor::zeros(&[6, 2, 3, 3]),
            None,
            Conv2dOptions::default().groups(3),
        )),
        &["groups 3", "(4)", "(6)"],
    );
    has(
        &err(x.conv2d(
            &Tensor::zeros(&[2, 3, 3, 3]),
            None,
            Conv2dOptions::default(),
        )),
        &["[2, 3, 3, 3]", "[1, 4, 8, 8]"],
    );
    has(
        &err(x.conv2d(
            &Tensor::zeros(&[2, 4, 3, 3]),
            Some(&Tensor::zeros(&[3])),
            Conv2dOptions::default(),
        )),
        &["bias", "[2]", "[3]"],
    );
    has(
        &err(x.conv2d(
            &Tensor::zeros(&[2, 4, 11, 11]),
            None,
            Conv2dOptions::default(),
        )),
        &["kernel", "11", "[1, 4, 8, 8]"],
    );
    has(
        &err(x.conv2d(
            &Tensor::zeros(&[2, 4, 3, 3]),
            None,
            Conv2dOptions::new(0, 1),
        )),
        &["stride"],
    );
}

#[test]
fn norm_pool_linear_and_loss_refusals() {
    let x = Tensor::zeros(&[2, 3, 4, 4]);
    has(
        &err(x.batch_norm2d(
            Some(&Tensor::ones(&[4])),
            None,
            None,
            BatchNormOptions::default(),
        )),
        &["weight", "[3]", "[4]"],
    );
    has(
        &err(Tensor::zeros(&[1, 3, 1, 1]).batch_norm2d(
            None,
            None,
            None,
            BatchNormOptions::default(),
        )),
        &["more than one value", "[1, 3, 1, 1]"],
    );
    has(
        &err(x.batch_norm2d(
            None,
            None,
            None,
            BatchNormOptions {
                training: false,
                ..Default::default()
            },
        )),
        &["running statistics"],
    );
    has(
        &err(x.batch_norm2d(
            None,
            None,
            Some(&mut RunningStats::new(2)),
            BatchNormOptions::default(),
        )),
        &["running mean", "[3]", "[2]"],
    );
    has(
        &err(x.max_pool2d(Pool2dOptions::new(3, 1, 2))),
        &["padding", "kernel", "[2, 3, 4, 4]"],
    );
    has(
        &err(x.avg_pool2d(Pool2dOptions::new(9, 1, 0))),
        &["kernel", "[2, 3, 4, 4]"],
    );
    has(
        &err(Tensor::zeros(&[3, 4]).global_avg_pool2d()),
        &["4 dimensions", "[3, 4]"],
    );
    has(
        &err(Tensor::zeros(&[2, 5]).linear(&Tensor::zeros(&[3, 4]), None)),
        &["5 features", "[3, 4]"],
    );
    has(
        &err(Tensor::zeros(&[2, 7]).grouped_linear(&Tensor::zeros(&[4, 2, 3]), None)),
        &["7 features", "12", "3"],
    );
    has(
        &err(Tensor::zeros(&[2, 3])
            .grouped_linear(&Tensor::zeros(&[4, 2, 3]), Some(&Tensor::zeros(&[2])))),
        &["bias", "[4, 2]"],
    );
    let logits = Tensor::zeros(&[2, 10]);
    has(
        &err(logits.cross_entropy(&[3, 10], 0.0)),
        &["label 10", "position 1", "10 classes"],
    );
    has(
        &err(logits.cross_entropy(&[3], 0.0)),
        &["1 labels", "[2, 10]"],
    );
    has(
        &err(logits.cross_entropy(&[3, 4], 1.5)),
        &["smoothing", "1.5"],
    );
    has(&err(logits.softmax(2)), &["axis 2", "[2, 10]"]);
}
