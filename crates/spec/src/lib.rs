//! What every kernel of the framework computes, shared by both backends.
//!
//! For each op family there is one module holding its descriptor (the sizes a kernel needs,
//! such as [`conv2d::Conv2dGeometry`], with the `validate()` that says when they make sense)
//! and its reference: the formula itself for the elementwise ops, the textbook definition
//! written as nested loops in f64 for the others, with no packing, blocking or threading, so
//! it can be checked by eye. The fast CPU kernels (`senet-cpu`) and the WGSL kernels
//! (`senet-gpu`) both take these descriptors; the CPU kernels are tested against these loops
//! and the WGSL kernels against the CPU kernels, on the shapes of [`cases`], and the op
//! self-test checks every op against them end to end. [`optim`] only holds the scalars both
//! optimizer steps share. This crate depends on no other crate of the framework.

#![deny(missing_docs)]

pub mod batchnorm;
pub mod cases;
pub mod conv2d;
mod element;
pub mod elementwise;
pub mod grouped_linear;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod softmax;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use element::Element;

/// Panics unless a kernel argument has the length its descriptor implies. Kernels check their
/// slices with it because the tensor layer validates shapes first: a mismatch is a caller bug.
pub fn check_len(what: &str, name: &str, got: usize, want: usize) {
    assert_eq!(
        got, want,
        "{what}: {name} has {got} elements, the shape needs {want}"
    );
}

/// Input coordinate seen by output position `o` through kernel tap `k`, or `None` in the
/// padding. Convolution and pooling windows both walk their input this way.
pub(crate) fn tap(
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    len: usize,
) -> Option<usize> {
    let i = (o * stride + k * dilation) as isize - pad as isize;
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&a| a.to_f64()).collect()
}

fn from_f64<T: Element>(v: Vec<f64>) -> Vec<T> {
    v.into_iter().map(T::from_f64).collect()
}
