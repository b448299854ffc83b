//! Shape, strides and offset: how a flat buffer is read as an n-dimensional tensor.
//! Views (`permute`, `narrow`, broadcasting) only change the layout, never the buffer.
use crate::{Error, Result};

/// How a tensor reads its flat buffer: element `[i0, i1, ...]` is at
/// `offset + i0 * strides[0] + i1 * strides[1] + ...`. A row-major tensor of shape `[2, 3]`
/// has strides `[3, 1]`; its transpose, the same buffer, has shape `[3, 2]` and strides `[1, 3]`.
///
/// ```
/// # use senet_tensor::Tensor;
/// let x = Tensor::zeros(&[2, 3]);
/// assert_eq!(x.layout().strides(), &[3, 1]);
/// assert_eq!(x.t()?.layout().strides(), &[1, 3]);
/// # Ok::<(), senet_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

/// Row-major strides of a shape.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

impl Layout {
    /// The row-major layout of `shape` from the start of a buffer (the last axis varies
    /// fastest).
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }
    /// The size of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// How many buffer elements one step along each axis skips (0 for a broadcast axis).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    /// Where element `[0, 0, ...]` sits in the buffer (non-zero after `narrow`).
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements, the product of the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// True when the elements are `buffer[offset..offset + numel]` in row-major order.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    pub(crate) fn permute(&self, axes: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if axes.len() != rank
            || axes
                .iter()
                .any(|&a| a >= rank || std::mem::replace(&mut seen[a], true))
        {
            return Err(Error::shape(
                "permute",
                format!(
                    "{axes:?} is not a permutation of the {rank} axes of a tensor of shape {:?}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: axes.iter().map(|&a| self.shape[a]).collect(),
            strides: axes.iter().map(|&a| self.strides[a]).collect(),
            offset: self.offset,
        })
    }

    pub(crate) fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Layout> {
        if axis >= self.rank() || start + len > self.shape[axis] {
            return Err(Error::shape(
                "narrow",
                format!(
                    "range {start}..{} on axis {axis} is outside shape {:?}",
                    start + len,
                    self.shape
                ),
            ));
        }
        let mut l = self.clone();
        l.shape[axis] = len;
        l.offset += start * self.strides[axis];
        Ok(l)
    }

    /// The view of this layout broadcast to `target` (numpy rules: align right, size-1 dims
    /// stretch with stride 0).
    pub(crate) fn broadcast_as(&self, target: &[usize]) -> Result<Layout> {
        let err = || {
            Error::shape(
                "broadcast",
                format!("cannot broadcast shape {:?} to {:?}", self.shape, target),
            )
        };
        if target.len() < self.rank() {
            return Err(err());
        }
        let lead = target.len() - self.rank();
        let mut strides = vec![0; target.len()];
        for (d, &t) in target.iter().enumerate().skip(lead) {
            let (s, st) = (self.shape[d - lead], self.strides[d - lead]);
            strides[d] = if s == t {
                st
            } else if s == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout {
            shape: target.to_vec(),
            strides,
            offset: self.offset,
        })
    }
}

/// The shape two shapes broadcast to, or an error naming both.
pub(crate) fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (da, db) {
            _ if da == db => da,
            (1, d) | (d, 1) => d,
            _ => return Err(Error::shape(op, format!("shapes {a:?} and {b:?} cannot be broadcast together (dimension {i}: {da} vs {db})"))),
        };
    }
    Ok(out)
}

impl Layout {
    /// `layout` moved to start at `offset` in its buffer.
    pub(crate) fn with_offset(mut layout: Layout, offset: usize) -> Layout {
        layout.offset = offset;
        layout
    }
}
