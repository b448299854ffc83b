//! Optimizers over a module's parameters: SGD (momentum, Nesterov, L2 weight decay) and AdamW,
//! with PyTorch's semantics. The per-parameter state (velocity, moments) is kept by parameter
//! name, so it can be saved with a checkpoint and restored for an exact resume.
use crate::{Error, Module, Result, Slot};
use senet_tensor::{AdamWStep, Gradients, SgdStep, Tensor};
use std::collections::BTreeMap;

/// Which update rule, with its own hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent (`torch.optim.SGD`).
    Sgd {
        /// How much of the previous step's velocity carries over (0 for plain SGD).
        momentum: f64,
        /// Step with the look-ahead gradient (Nesterov momentum).
        nesterov: bool,
    },
    /// Adam with decoupled weight decay (`torch.optim.AdamW`).
    AdamW {
        /// Decay rate of the running mean of gradients.
        beta1: f64,
        /// Decay rate of the running mean of squared gradients.
        beta2: f64,
        /// Added to the denominator so a zero second moment does not divide by zero.
        eps: f64,
    },
}

/// Updates a module's parameters from their gradients, keeping each parameter's state
/// (velocity, moments) between steps.
///
/// ```
/// use senet_nn::{layers::Linear, optim::Optimizer, Module};
/// use senet_tensor::Tensor;
///
/// let mut layer = Linear::new(Tensor::ones(&[1, 2]), None);
/// let mut opt = Optimizer::sgd(0.0, false, 0.0);
/// let loss = layer.forward(&Tensor::ones(&[1, 2]), true)?.sum_all()?;
/// let grads = loss.backward()?; // d loss / d weight = 1 everywhere
/// opt.step(&mut layer, &grads, 0.5)?;
/// assert_eq!(layer.weight.to_vec_f32()?, [0.5, 0.5]);
/// # Ok::<(), senet_nn::Error>(())
/// ```
pub struct Optimizer {
    /// The update rule.
    pub kind: OptimizerKind,
    /// L2 penalty for SGD (added to the gradient), decoupled decay for AdamW.
    pub weight_decay: f64,
    /// Steps taken so far.
    pub steps: u64,
    /// Per parameter: `[velocity]` for SGD with momentum, `[m, v]` for AdamW.
    state: BTreeMap<String, Vec<Tensor>>,
}

impl Optimizer {
    /// SGD. With `momentum == 0` it is plain SGD whatever `nesterov` says.
    pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Optimizer {
            kind: OptimizerKind::Sgd {
                momentum,
                nesterov: nesterov && momentum != 0.0,
            },
            weight_decay,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// AdamW with decoupled weight decay.
    pub fn adamw(beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        Optimizer {
            kind: OptimizerKind::AdamW { beta1, beta2, eps },
            weight_decay,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// Updates every parameter of `module` that has a gradient in `grads`, with learning rate `lr`.
    pub fn step(&mut self, module: &mut dyn Module, grads: &Gradients, lr: f64) -> Result<()> {
        let _phase = senet_tensor::profile::phase(senet_tensor::profile::Phase::Optimizer);
        self.steps += 1;
        let (kind, wd, step) = (self.kind, self.weight_decay, self.steps);
        let state = &mut self.state;
        let mut failure: Option<Error> = None;
        module.visit("", &mut |name, slot| {
            let Slot::Param(p) = slot else { return };
            let Some(g) = grads.get(p) else { return };
            if failure.is_some() {
                return;
            }
            let r: senet_tensor::Result<()> = (|| {
                match kind {
                    OptimizerKind::Sgd { momentum, nesterov } => {
                        let h = SgdStep {
                            lr,
                            momentum,
                            weight_decay: wd,
                            nesterov,
                        };
                        // The parameter and its velocity are handed over, not cloned, so
                        // that their buffers can be updated in place (see `sgd_update`).
                        let velocity = state.remove(name).and_then(|s| s.into_iter().next());
                        let (np, v) = take(p).sgd_update(g, velocity, h)?;
                        *p = np.requires_grad();
                        if let Some(v) = v {
                            state.insert(name.to_string(), vec![v]);
                        }
                    }
                    OptimizerKind::AdamW { beta1, beta2, eps } => {
                        let (m, v) = match state.remove(name).as_deref() {
                            Some([m, v]) => (m.clone(), v.clone()),
                            _ => (p.zeros_like()?, p.zeros_like()?),
                        };
                        let h = AdamWStep {
                            lr,
                            beta1,
                            beta2,
                            eps,
                            weight_decay: wd,
                            step,
                        };
                        let (np, m, v) = take(p).adamw_update(g, m, v, h)?;
                        *p = np.requires_grad();
                        state.insert(name.to_string(), vec![m, v]);
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                failure = Some(e.into());
            }
        });
        failure.map_or(Ok(()), Err)
    }

    /// Checks that state loaded with [`Self::load_state`] belongs to `module`: every state
    /// tensor is one of its parameters', with that parameter's shape, and (once a step has been
    /// taken, for an optimizer that keeps state) every parameter has its state. A resume from
    /// another model's or another run's optimizer file would otherwise go on silently.
    pub fn check_state(&self, module: &mut dyn Module) -> Result<()> {
        let mut params: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        module.visit("", &mut |name, slot| {
            if let Slot::Param(p) = slot {
                params.insert(name.to_string(), p.shape().to_vec());
            }
        });
        for (name, tensors) in &self.state {
            let Some(shape) = params.get(name) else {
                return Err(Error::Config(format!(
                    "optimizer state for {name}, a parameter the model does not have"
                )));
            };
            if let Some(t) = tensors.iter().find(|t| t.shape() != shape.as_slice()) {
                return Err(Error::Config(format!(
                    "optimizer state of {name} has shape {:?}, the parameter {shape:?}",
                    t.shape()
                )));
            }
        }
        let keeps_state = match self.kind {
            OptimizerKind::Sgd { momentum, .. } => momentum != 0.0,
            OptimizerKind::AdamW { .. } => true,
        };
        if keeps_state && self.steps > 0 {
            if let Some(missing) = params.keys().find(|k| !self.state.contains_key(*k)) {
                return Err(Error::Config(format!(
                    "optimizer state after {} steps has nothing for parameter {missing}",
                    self.steps
                )));
            }
        }
        Ok(())
    }

    /// The state as named tensors (`<param>.velocity`, `<param>.exp_avg`, `<param>.exp_avg_sq`),
    /// for saving next to a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let names: &[&str] = match self.kind {
            OptimizerKind::Sgd { .. } => &["velocity"],
            OptimizerKind::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        };
        self.state
            .iter()
            .flat_map(|(p, ts)| {
                ts.iter()
                    .zip(names)
                    .map(move |(t, n)| (format!("{p}.{n}"), t.clone()))
            })
            .collect()
    }

    /// Restores state saved by [`Optimizer::state_tensors`] (with the step count).
    pub fn load_state(&mut self, tensors: BTreeMap<String, Tensor>, steps: u64) -> Result<()> {
        let names: &[&str] = match self.kind {
            OptimizerKind::Sgd { .. } => &["velocity"],
            OptimizerKind::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        };
        let mut slots: BTreeMap<String, Vec<Option<Tensor>>> = BTreeMap::new();
        for (key, t) in tensors {
            let (param, what) = key.rsplit_once('.').ok_or_else(|| {
                Error::Config(format!(
                    "optimizer state tensor {key} is not <param>.<state>"
                ))
            })?;
            let idx = names.iter().position(|n| *n == what).ok_or_else(|| Error::Config(format!("optimizer state tensor {key}: {what} is not state of this optimizer ({names:?})")))?;
            slots
                .entry(param.to_string())
                .or_insert_with(|| vec![None; names.len()])[idx] = Some(t);
        }
        // Every parameter's state whole: each of its tensors present, none stood in for another.
        let mut state: BTreeMap<String, Vec<Tensor>> = BTreeMap::new();
        for (p, s) in slots {
            let have = s.iter().flatten().count();
            if have != names.len() {
                return Err(Error::Config(format!(
                    "optimizer state of {p} has {have} of its {} tensors",
                    names.len()
                )));
            }
            state.insert(p, s.into_iter().flatten().collect());
        }
        self.state = state;
        self.steps = steps;
        Ok(())
    }
}

/// The parameter out of its slot, leaving a scalar in its place until the step puts the
/// updated one back: the slot's handle would otherwise keep the buffer shared.
fn take(p: &mut Tensor) -> Tensor {
    std::mem::replace(p, Tensor::scalar(0.0))
}
