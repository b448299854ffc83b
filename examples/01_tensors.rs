//! Tensors: a flat buffer of numbers plus a layout (shape, strides, offset) that says how to read
//! it. Run it with `cargo run --release --example 01_tensors` and read the output next to the
//! code. Next: `02_autograd`.
use senet::{Result, Tensor};

fn main() -> Result<()> {
    // 1. A tensor is a shape plus numbers (f32 by default), held behind a cheap handle: cloning a
    //    `Tensor` clones an `Arc`, never the numbers. `{x}` prints it as PyTorch's `print(x)`
    //    does; `{x:?}` adds the shape, dtype and device.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    println!("x = {x}");
    println!("{x:?}");

    // 2. The layout maps an index to a place in the buffer: element [i, j] is at
    //    `offset + i * strides[0] + j * strides[1]`. Row-major ("contiguous"): the last axis
    //    steps by 1, each earlier axis by the size of everything after it.
    show("x", &x);

    // 3. A view is a new layout on the same buffer: no numbers move. The transpose swaps the
    //    strides, so its rows are read down the columns of `x`; it is no longer contiguous.
    let xt = x.t()?;
    println!("\nx.t() = {xt}");
    show("x.t()", &xt);
    //    `narrow` (a slice along one axis) only moves the offset: column 1 onwards of `x`.
    show("x.narrow(1, 1, 2)", &x.narrow(1, 1, 2)?);

    // 4. Kernels want contiguous memory, so `contiguous()` copies a strided view into a fresh
    //    row-major buffer (and is free when the tensor already is contiguous).
    show("x.t().contiguous()", &xt.contiguous()?);
    //    `reshape` keeps the row-major order of the elements. On a contiguous tensor it is just
    //    a new layout; on a view it copies first, which is why reshaping the transpose gives the
    //    columns of `x` one after another.
    println!("x.reshape([3, 2])   = {}", x.reshape(&[3, 2])?);
    println!("x.t().reshape([6])  = {}", xt.reshape(&[6])?);

    // 5. Broadcasting (numpy's rules): align shapes on the right; a dimension of size 1 (or a
    //    missing one) stretches to match. The stretch is a view with stride 0: one number is
    //    read again and again, never copied.
    let row = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3])?;
    println!("\nx + row ([2, 3] + [3]) = {}", x.add(&row)?);
    show("row.broadcast_as([2, 3])", &row.broadcast_as(&[2, 3])?);
    let col = Tensor::from_vec(vec![1.0f32, -1.0], &[2, 1])?;
    println!("col * row ([2, 1] * [3] -> [2, 3]) = {}", col.mul(&row)?);
    //    Shapes that do not broadcast are an error value naming both shapes, not a panic.
    let wrong = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    match x.add(&wrong) {
        Ok(t) => println!("unexpected: {t}"),
        Err(e) => println!("x + [2] fails: {e}"),
    }

    // 6. Printing follows PyTorch: f64 tensors say so, and tensors over 1000 elements show only
    //    their first and last 3 entries along each long axis (only those are read back).
    let halves = Tensor::from_vec(vec![0.5f64, 1.25, -2.0], &[3])?;
    println!("\nan f64 tensor: {halves}");
    let big: Vec<f32> = (0..2000).map(|i| (i as f32).sqrt()).collect();
    println!(
        "sqrt(0..2000) as [40, 50]: {}",
        Tensor::from_vec(big, &[40, 50])?
    );
    Ok(())
}

/// Prints a tensor's layout: what a view changes.
fn show(name: &str, t: &Tensor) {
    let l = t.layout();
    println!(
        "{name:<26} shape {:?}, strides {:?}, offset {}, contiguous: {}",
        l.shape(),
        l.strides(),
        l.offset(),
        t.is_contiguous()
    );
}
