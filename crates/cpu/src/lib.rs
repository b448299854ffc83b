//! CPU kernels for every op of the framework, on plain slices in row-major (C) order.
//!
//! This crate knows nothing of `Tensor`: each kernel takes contiguous input slices plus the
//! sizes it needs and returns a fresh `Vec`. Kernels are generic over [`Element`] (f32 for
//! training, f64 for gradient checking). Every fast kernel here has a naive loop in
//! [`reference`] that it is tested against; the tensor crate's self-test uses the same loops.
//!
//! Parallel kernels split work into chunks whose size does not depend on the number of
//! threads and combine partial results in a fixed order, so results are bit-for-bit the same
//! on any machine with any `RAYON_NUM_THREADS`.

pub mod batchnorm;
pub mod conv2d;
mod element;
pub mod elementwise;
pub mod grouped_linear;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod reference;
pub mod softmax;
#[cfg(test)]
mod test_util;

pub use element::Element;
