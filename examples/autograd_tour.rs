//! A walk through tensors, the graph and `backward()`. Run it with
//! `cargo run --example autograd_tour` and read the output next to the code.
use rand::rngs::StdRng;
use rand::SeedableRng;
use senet::tensor::{Conv2dOptions, Pool2dOptions};
use senet::{no_grad, Result, Tensor};

fn main() -> Result<()> {
    // 1. A tensor is a shape plus numbers (f32 by default), held behind a cheap handle.
    //    `{x}` prints it as PyTorch's `print(x)` does (rows, aligned, `...` for big tensors);
    //    `{x:?}` adds the shape, dtype and device.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    println!("x = {x}");
    println!("{x:?}");

    // 2. Views change how the numbers are read, not the numbers: a transpose is a new layout.
    let xt = x.t()?;
    println!(
        "x.t() has shape {:?}, contiguous: {}",
        xt.shape(),
        xt.is_contiguous()
    );

    // 3. Ops broadcast like numpy: [2, 3] + [3] adds the row to every row.
    let row = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3])?;
    println!("x + row = {}", x.add(&row)?);

    // 4. Ask for gradients by marking leaves with `requires_grad`. Every op on them records
    //    itself (its inputs and what its gradient needs) in the result.
    let w = Tensor::from_vec(vec![0.2f32, -0.1, 0.05], &[3, 1])?.requires_grad();
    let y = x.matmul(&w)?.tanh()?; // [2, 1]
    println!("y = tanh(x @ w) = {y}");
    println!(
        "y was made by op `{}` from {} input(s)",
        y.op().unwrap().name(),
        y.op().unwrap().inputs().len()
    );

    // 5. `backward()` on a one-element tensor walks the graph in reverse and returns the
    //    gradients of every leaf that asked for one.
    let loss = y.sum_all()?;
    let grads = loss.backward()?;
    println!("d loss / d w = {}", grads.get(&w).unwrap());
    // By hand: d/dw sum(tanh(x @ w)) = x^T (1 - y^2).
    let by_hand = no_grad(|| x.t()?.matmul(&y.mul(&y)?.neg()?.add_scalar(1.0)?))?;
    println!("by hand      = {by_hand}");

    // 6. Under `no_grad` nothing is recorded: evaluation loops cannot grow memory.
    let z = no_grad(|| x.matmul(&w))?;
    println!("recorded under no_grad? {}", z.op().is_some());

    // 7. The layer ops work the same way. A tiny conv net on a random image:
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
        .global_avg_pool2d()?; // [1, 4]
    let loss = h.cross_entropy(&[2], 0.0)?;
    let g = loss.backward()?;
    println!(
        "conv net loss {:.4}, kernel gradient shape {:?}",
        loss.item()?,
        g.get(&kernel).unwrap().shape()
    );
    Ok(())
}
