//! Fast CPU kernels for every op of the framework, on plain slices in row-major (C) order.
//!
//! This crate knows nothing of `Tensor`: each kernel takes contiguous input slices plus the
//! descriptor of `senet-spec` that sizes it (a conv geometry, a batch-norm shape, ...) and
//! returns a fresh `Vec`. Kernels are generic over [`senet_spec::Element`] (f32 for training,
//! f64 for gradient checking), and each module's tests compare its kernels with the reference
//! loops of the same module in `senet-spec`.
//!
//! Parallel kernels split work into chunks whose size does not depend on the number of
//! threads and combine partial results in a fixed order, so results are bit-for-bit the same
//! on any machine with any `RAYON_NUM_THREADS`.

pub mod batchnorm;
pub mod conv2d;
pub mod elementwise;
pub mod grouped_linear;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod softmax;
