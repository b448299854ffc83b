use senet::cpu::elementwise::{binary, unary, Strided};
use senet::spec::elementwise::{BinaryOp, UnaryOp};
use std::time::Instant;
fn main() {
    let n = 2 << 20;
    let a: Vec<f32> = (0..n).map(|i| (i as f32).sin()).collect();
    let b: Vec<f32> = (0..n).map(|i| (i as f32).cos()).collect();
    let shape = [n];
    let st = [1usize];
    for _ in 0..3 {
        let t = Instant::now();
        let y = binary(
            Strided {
                data: &a,
                strides: &st,
                offset: 0,
            },
            Strided {
                data: &b,
                strides: &st,
                offset: 0,
            },
            &shape,
            BinaryOp::ReluGrad,
        );
        let t1 = t.elapsed();
        let t = Instant::now();
        let z = unary(&a, UnaryOp::Relu);
        let t2 = t.elapsed();
        let t = Instant::now();
        let w: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| if y > 0.0 { x } else { 0.0 })
            .collect();
        let t3 = t.elapsed();
        println!(
            "binary {:?} unary {:?} plain-serial {:?} {}",
            t1,
            t2,
            t3,
            y[5] + z[5] + w[5]
        );
    }
}
