//! Reverse-mode differentiation: `backward` sorts the graph topologically and applies one
//! gradient rule per recorded `Op` — every rule of the framework is in the `match` below.
//! Rules are written with tensor ops where that is fast enough; conv, batch norm, pooling,
//! grouped linear and the losses call the dedicated kernels next to their forward.
use crate::ops::{batchnorm, conv, linear, pool, softmax};
use crate::{Error, NoGradGuard, Op, Result, Tensor, TensorId};
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use std::collections::{HashMap, HashSet};

/// Gradients of a scalar with respect to the `requires_grad` leaves it depends on.
#[derive(Default, Debug)]
pub struct Gradients(HashMap<TensorId, Tensor>);

impl Gradients {
    /// The gradient for `t`, if `t` is a `requires_grad` leaf the output depends on.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }
    /// Takes the gradient for `t` out (an optimizer consumes each gradient once).
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }
    /// Number of leaves that received a gradient.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether no leaf received a gradient.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The nodes that lead to `root`, each after all of its inputs (iterative depth-first search,
/// so a deep network cannot overflow the stack).
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(node);
            continue;
        }
        if !visited.insert(node.id()) {
            continue;
        }
        stack.push((node.clone(), true));
        if let Some(op) = node.op() {
            for input in op.inputs() {
                if input.tracks_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

impl Tensor {
    /// Gradients of this one-element tensor (a loss) with respect to every `requires_grad`
    /// leaf it depends on. The graph is left as it was; call again after another forward.
    /// Each gradient has the shape of its leaf.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let w = Tensor::ones(&[3, 2]).requires_grad();
    /// let x = Tensor::ones(&[4, 3]);
    /// let loss = x.matmul(&w)?.sum_all()?;
    /// let grads = loss.backward()?;
    /// let dw = grads.get(&w).unwrap();
    /// assert_eq!(dw.shape(), &[3, 2]);
    /// assert_eq!(dw.to_vec_f32()?, [4.0; 6]); // each weight met 4 ones
    /// // Only a one-element output has an implied seed.
    /// assert!(x.matmul(&w)?.backward().is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::Backward(format!(
                "needs a one-element output, got shape {:?}; use backward_with to seed a gradient",
                self.shape()
            )));
        }
        self.backward_with(&self.ones_like()?)
    }

    /// Backward from this tensor with `seed` as its incoming gradient (same shape): the
    /// gradients of `sum(self * seed)`.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::ones(&[2, 2]).requires_grad();
    /// let y = x.mul_scalar(3.0)?;
    /// let grads = y.backward_with(&Tensor::full(&[2, 2], 0.5))?;
    /// assert_eq!(grads.get(&x).unwrap().to_vec_f32()?, [1.5; 4]);
    /// assert!(y.backward_with(&Tensor::ones(&[4])).is_err()); // seed of the wrong shape
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn backward_with(&self, seed: &Tensor) -> Result<Gradients> {
        if !self.tracks_grad() {
            return Err(Error::Backward(
                "this tensor does not depend on any tensor that requires a gradient".into(),
            ));
        }
        if seed.shape() != self.shape() {
            return Err(Error::Backward(format!(
                "seed gradient has shape {:?}, the output has {:?}",
                seed.shape(),
                self.shape()
            )));
        }
        let _no_grad = NoGradGuard::new();
        let _phase = crate::profile::phase(crate::profile::Phase::Backward);
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(self.id(), seed.clone());
        let mut result = Gradients::default();
        for node in topological_order(self).into_iter().rev() {
            let Some(grad) = grads.remove(&node.id()) else {
                continue;
            };
            let Some(op) = node.op() else {
                if node.is_variable() {
                    result.0.insert(node.id(), grad);
                }
                continue;
            };
            let inputs = op.inputs();
            let input_grads = input_gradients(&node, op, &grad)?;
            if input_grads.len() != inputs.len() {
                return Err(Error::Backward(format!(
                    "{} returned {} gradients for {} inputs",
                    op.name(),
                    input_grads.len(),
                    inputs.len()
                )));
            }
            for (input, g) in inputs.into_iter().zip(input_grads) {
                let Some(g) = g else { continue };
                if !input.tracks_grad() {
                    continue;
                }
                if g.shape() != input.shape() {
                    return Err(Error::Backward(format!(
                        "{} produced a gradient of shape {:?} for an input of shape {:?}",
                        op.name(),
                        g.shape(),
                        input.shape()
                    )));
                }
                let total = match grads.remove(&input.id()) {
                    Some(prev) => prev.add(&g)?,
                    None => g,
                };
                grads.insert(input.id(), total);
            }
        }
        Ok(result)
    }
}

/// Zeros shaped `shape`, with the dtype and device of `like`.
fn zeros(shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Tensor::full_on(shape, 0.0, like.dtype(), like.device())
}

/// The gradient for each input of `op` (in `op.inputs()` order), given the gradient `g` of
/// its output `node`.
// Every gradient rule of the framework is an arm of this one match, so that they can be read
// (and compared) in one place; splitting it by op family would scatter them again.
#[allow(clippy::too_many_lines)]
fn input_gradients(node: &Tensor, op: &Op, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let some = |t: Tensor| Ok(vec![Some(t)]);
    match op {
        Op::Binary(kind, a, b) => {
            let (ga, gb) = match kind {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.neg()?),
                BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
                // d(a/b)/db = -a / b^2
                BinaryOp::Div => (g.div(b)?, g.mul(a)?.div(&b.mul(b)?)?.neg()?),
                BinaryOp::Eq | BinaryOp::Maximum | BinaryOp::ReluGrad => {
                    return Err(Error::Backward(format!("{kind:?} has no gradient")))
                }
            };
            // A broadcast operand receives the sum over the axes it was stretched along.
            Ok(vec![
                Some(ga.sum_to(a.shape())?),
                Some(gb.sum_to(b.shape())?),
            ])
        }
        Op::Unary(kind, x) => {
            let y = node.detach();
            some(match *kind {
                UnaryOp::Neg => g.neg()?,
                UnaryOp::Exp => g.mul(&y)?,
                UnaryOp::Log => g.div(x)?,
                UnaryOp::Sqrt => g.div(&y)?.mul_scalar(0.5)?,
                UnaryOp::Powf(p) => g.mul(&x.powf(p - 1.0)?)?.mul_scalar(p)?,
                UnaryOp::Relu => g.relu_grad(x)?,
                UnaryOp::Sigmoid => g.mul(&y.mul(&y.neg()?.add_scalar(1.0)?)?)?,
                UnaryOp::Tanh => g.mul(&y.mul(&y)?.neg()?.add_scalar(1.0)?)?,
                UnaryOp::Scale(c) => g.mul_scalar(c)?,
                UnaryOp::AddScalar(_) => g.clone(),
                UnaryOp::Step => g.zeros_like()?,
                // d/dx x s(x) = s + x s (1 - s) = s (1 - y) + y, with s = sigmoid(x).
                UnaryOp::Silu => g.mul(&x.sigmoid()?.mul(&y.neg()?.add_scalar(1.0)?)?.add(&y)?)?,
            })
        }
        // The output kept the reduced axes (size 1), so `g` broadcasts back over them.
        Op::Sum { input, .. } => some(g.broadcast_as(input.shape())?),
        Op::Max { input, axes } => {
            // Route the gradient to the maxima, split evenly between ties.
            let mask = input.eq_mask(&node.detach())?;
            let count = mask.sum(axes, true)?;
            some(mask.mul(&g.div(&count)?)?)
        }
        Op::Reshape(x) => some(g.reshape(x.shape())?),
        Op::Permute { axes, .. } => {
            let mut inverse = vec![0; axes.len()];
            for (i, &a) in axes.iter().enumerate() {
                inverse[a] = i;
            }
            some(g.permute(&inverse)?)
        }
        Op::Broadcast(x) => some(g.sum_to(x.shape())?),
        Op::Narrow { input, axis, start } => {
            // Place `g` back in a zero tensor of the input's shape.
            let (axis, start) = (*axis, *start);
            let mut before = input.shape().to_vec();
            before[axis] = start;
            let mut after = input.shape().to_vec();
            after[axis] = input.shape()[axis] - start - g.shape()[axis];
            let (zb, za) = (zeros(&before, g)?, zeros(&after, g)?);
            some(Tensor::concat(&[&zb, g, &za], axis)?)
        }
        Op::Concat { inputs, axis } => {
            let mut start = 0;
            let mut out = Vec::with_capacity(inputs.len());
            for t in inputs {
                out.push(Some(g.narrow(*axis, start, t.shape()[*axis])?));
                start += t.shape()[*axis];
            }
            Ok(out)
        }
        Op::ToDType(x) => some(g.to_dtype(x.dtype())?),
        Op::ToDevice(x) => some(g.to_device(x.device())?),
        Op::Matmul(a, b) => {
            let tr = |t: &Tensor| t.transpose(t.rank() - 2, t.rank() - 1);
            let ga = g.matmul(&tr(b)?)?.sum_to(a.shape())?;
            let gb = tr(a)?.matmul(g)?.sum_to(b.shape())?;
            Ok(vec![Some(ga), Some(gb)])
        }
        Op::Softmax { axis, log, .. } => some(softmax::softmax_backward(node, g, *axis, *log)?),
        Op::CrossEntropy {
            labels,
            smoothing,
            probs,
            ..
        } => some(softmax::cross_entropy_backward(
            probs, labels, *smoothing, g,
        )?),
        Op::Conv2d {
            input,
            weight,
            bias,
            geometry,
        } => {
            let (dx, dw, db) = conv::conv2d_backward(
                input,
                weight,
                bias.is_some(),
                input.tracks_grad(),
                geometry,
                g,
            )?;
            Ok([dx, Some(dw)]
                .into_iter()
                .chain(bias.as_ref().map(|_| db))
                .collect())
        }
        Op::BatchNorm2d {
            input,
            weight,
            bias,
            mean,
            invstd,
            training,
        } => {
            let (dx, dw, db) = batchnorm::batch_norm2d_backward(
                input,
                weight.as_ref(),
                mean,
                invstd,
                *training,
                g,
            )?;
            Ok([Some(dx)]
                .into_iter()
                .chain(weight.as_ref().map(|_| Some(dw)))
                .chain(bias.as_ref().map(|_| Some(db)))
                .collect())
        }
        Op::MaxPool2d {
            argmax, geometry, ..
        } => some(pool::max_pool2d_backward(geometry, argmax, g)?),
        Op::AvgPool2d { geometry, .. } => some(pool::avg_pool2d_backward(geometry, g)?),
        Op::GroupedLinear {
            input,
            weight,
            bias,
            shape,
        } => {
            let (dx, dw, db) = linear::grouped_linear_backward(
                input,
                weight,
                bias.as_ref().map(|b| b.shape()),
                *shape,
                g,
            )?;
            Ok([Some(dx), Some(dw)]
                .into_iter()
                .chain(bias.as_ref().map(|_| db))
                .collect())
        }
        Op::Custom { op, inputs } => {
            let refs: Vec<&Tensor> = inputs.iter().collect();
            op.backward(&refs, &node.detach(), g)
                .map_err(|e| Error::Backward(format!("custom op {}: {e}", op.name())))
        }
    }
}
