//! Reverse-mode automatic differentiation: how ops record a graph and how `backward()` walks it.
//! Run it with `cargo run --release --example 02_autograd` and read the output next to the
//! code. Before: `01_tensors`; next: `03_custom_op_gradcheck`.
use rand::rngs::StdRng;
use rand::SeedableRng;
use senet::tensor::{Conv2dOptions, Pool2dOptions};
use senet::{no_grad, Result, Tensor};

fn main() -> Result<()> {
    // 1. Mark the leaves you want gradients for with `requires_grad` (it returns a new handle on
    //    the same numbers: use that one). Parameters are such leaves; data usually is not.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    let w = Tensor::from_vec(vec![0.2f32, -0.1, 0.05], &[3, 1])?.requires_grad();
    println!("w = {w}");

    // 2. Every op on a tensor that tracks gradients records itself in its result: its name, its
    //    inputs and whatever its gradient rule needs (matmul keeps both operands; tanh keeps
    //    its input). Nothing else is built: the graph is just these records, linked through the
    //    inputs, and it is freed with the last tensor that refers to it.
    let y = x.matmul(&w)?.tanh()?; // [2, 1]
    let loss = y.sum_all()?; // a one-element tensor: what backward starts from
    println!("y = tanh(x @ w) = {y}");
    println!("loss = {loss}");
    // Printed from the output back to the leaves. Some methods are built from simpler ops and
    // record those: `sum_all` is a sum over every axis, then a reshape to shape [].
    println!("the graph behind loss:");
    print_graph(&loss, 1);

    // 3. `backward()` visits the graph once in reverse topological order, applying each op's
    //    gradient rule (all of them are in crates/tensor/src/backprop.rs) and summing what
    //    reaches each tensor. It returns the gradients of the leaves that asked for one.
    let grads = loss.backward()?;
    let dw = grads.get(&w).expect("w asked for a gradient");
    println!("d loss / d w = {dw}");
    println!("d loss / d x recorded? {}", grads.get(&x).is_some());

    // 4. Check it by hand, twice. The chain rule on paper: d/dw sum(tanh(x @ w)) =
    //    x^T (1 - y^2). Computed with plain tensor ops under `no_grad` (see 6).
    let by_hand = no_grad(|| x.t()?.matmul(&y.mul(&y)?.neg()?.add_scalar(1.0)?))?;
    println!("x^T (1 - y^2) = {by_hand}");
    //    And numerically: nudge one weight up and down by eps; (L(w+eps) - L(w-eps)) / 2eps
    //    matches the derivative to O(eps^2). In f64, so rounding does not drown the difference.
    let eps = 1e-4;
    let loss_with = |w0: f64| -> Result<f64> {
        let w = Tensor::from_vec(vec![w0, -0.1, 0.05], &[3, 1])?;
        x.to_dtype(senet::tensor::DType::F64)?
            .matmul(&w)?
            .tanh()?
            .sum_all()?
            .item()
    };
    let w0 = 0.2f32 as f64; // the f32 weight, exactly
    let numeric = (loss_with(w0 + eps)? - loss_with(w0 - eps)?) / (2.0 * eps);
    println!(
        "d loss / d w[0]: backward {:.6}, central difference {numeric:.6}",
        dw.to_vec::<f32>()?[0]
    );

    // 5. A tensor used twice gets the sum of the gradients along both paths:
    //    d/dw sum(w * w + w) = 2w + 1.
    let both = w.mul(&w)?.add(&w)?.sum_all()?.backward()?;
    println!("d/dw sum(w*w + w) = {}", both.get(&w).unwrap());

    // 6. Under `no_grad` nothing is recorded, so an evaluation loop cannot grow a graph (or hold
    //    its memory). `detach()` cuts one tensor off the graph in the same way.
    let z = no_grad(|| x.matmul(&w))?;
    println!(
        "under no_grad: op recorded? {}, tracks grad? {}",
        z.op().is_some(),
        z.tracks_grad()
    );
    println!("detached y tracks grad? {}", y.detach().tracks_grad());

    // 7. The layer ops work the same way. A tiny conv net on a random (seeded) image:
    let mut rng = StdRng::seed_from_u64(0);
    let image = Tensor::randn(&[1, 3, 8, 8], &mut rng);
    let kernel = Tensor::randn(&[4, 3, 3, 3], &mut rng)
        .mul_scalar(0.2)?
        .requires_grad();
    let h = image
        .conv2d(&kernel, None, Conv2dOptions::new(1, 1))?
        .relu()?;
    let h = h
        .max_pool2d(Pool2dOptions::new(2, 2, 0))?
        .global_avg_pool2d()?; // [1, 4]: one score per class
    let loss = h.cross_entropy(&[2], 0.0)?;
    // (`global_avg_pool2d` records as a sum, a reshape and a scale by 1 / (H * W).)
    println!("\nconv net loss {:.4}; its graph:", loss.item()?);
    print_graph(&loss, 1);
    let g = loss.backward()?;
    println!(
        "kernel gradient shape {:?} (the kernel's own)",
        g.get(&kernel).unwrap().shape()
    );
    Ok(())
}

/// Prints the graph that produced `t`, one line per tensor, inputs indented under the op that
/// read them. A leaf has no op: either a variable (`requires_grad`) or a constant.
fn print_graph(t: &Tensor, depth: usize) {
    let pad = "  ".repeat(depth);
    match t.op() {
        Some(op) => {
            println!("{pad}{} -> {:?}", op.name(), t.shape());
            for input in op.inputs() {
                print_graph(input, depth + 1);
            }
        }
        None if t.is_variable() => println!("{pad}variable {:?}", t.shape()),
        None => println!("{pad}constant {:?}", t.shape()),
    }
}
