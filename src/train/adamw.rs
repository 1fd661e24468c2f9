//! `torch.optim.AdamW` with `amsgrad=False`, `maximize=False`, one parameter group or
//! several ([`AdamW::with_groups`], each with its own hyperparameters): the single-tensor
//! update PyTorch runs for CPU parameters (`_single_tensor_adam` with
//! `decoupled_weight_decay=True` in `torch/optim/adam.py`), op for op, so the same
//! gradients give the same parameters to the bit.
//!
//! Per parameter `p` with gradient `g`, at step `t` (counted from 1):
//!
//! ```text
//! p        *= 1 - lr * weight_decay
//! exp_avg   = exp_avg.lerp(g, 1 - beta1)
//! exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
//! denom     = sqrt(exp_avg_sq) / sqrt(1 - beta2^t) + eps
//! p        += -(lr / (1 - beta1^t)) * exp_avg / denom
//! ```
//!
//! tch's own optimizers (libtorch's C++ `torch::optim`) neither follow Python's op order
//! nor export their state; this one keeps the state in plain tensors
//! ([`AdamW::state`]) so a checkpoint can save and restore it.
//!
//! tch binds `addcmul_` and `addcdiv_` without their `value` argument. ATen computes
//! `self + value * t1 * t2` (and `self + value * t1 / t2`) with `value` cast to the
//! tensor's dtype, multiplying it into `t1` first; `t1 * value` by `mul` (whose double
//! scalar is cast the same way) followed by `value = 1` is the same product, so the
//! same bits.

use tch::Tensor;

use crate::error::{Error, Result};
use crate::io::TorchValue;

/// `torch.optim.AdamW`'s constructor arguments, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// `lr`. Default 1e-3 (the lecture passes 3e-4).
    pub lr: f64,
    /// `betas`. Default (0.9, 0.999).
    pub betas: (f64, f64),
    /// `eps`, added to the denominator. Default 1e-8.
    pub eps: f64,
    /// `weight_decay`, decoupled: `p *= 1 - lr * weight_decay`. Default 1e-2.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

impl AdamWConfig {
    /// The defaults with `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            ..Self::default()
        }
    }

    /// Checks what `torch.optim.AdamW.__init__` checks: `lr`, `eps`, `weight_decay` not
    /// negative, each beta in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        let (b1, b2) = self.betas;
        // `is_nan() || < 0` rather than `!(>= 0)`: NaN is refused too.
        let negative = |v: f64| v.is_nan() || v < 0.0;
        let bad = [
            ("lr", self.lr, negative(self.lr)),
            ("eps", self.eps, negative(self.eps)),
            (
                "weight_decay",
                self.weight_decay,
                negative(self.weight_decay),
            ),
            ("betas.0", b1, !(0.0..1.0).contains(&b1)),
            ("betas.1", b2, !(0.0..1.0).contains(&b2)),
        ];
        match bad.iter().find(|(_, _, bad)| *bad) {
            Some((name, v, _)) => Err(Error::config(*name, format!("invalid value {v}"))),
            None => Ok(()),
        }
    }
}

/// The state `torch.optim.AdamW` keeps for one parameter once it has been stepped:
/// `state[i]` of `optimizer.state_dict()`.
#[derive(Debug)]
pub struct ParamState {
    /// `step`: how many updates this parameter has had (PyTorch keeps it as a float32
    /// scalar tensor; every count up to 2^24 is exact in both).
    pub step: f64,
    /// `exp_avg`: the running mean of the gradient, like the parameter.
    pub exp_avg: Tensor,
    /// `exp_avg_sq`: the running mean of the squared gradient, like the parameter.
    pub exp_avg_sq: Tensor,
}

/// One of `torch.optim.AdamW`'s `param_groups`: its parameters and hyperparameters.
#[derive(Debug)]
pub struct ParamGroup {
    /// The parameters, by name, in order.
    pub params: Vec<(String, Tensor)>,
    /// The group's `lr`, `betas`, `eps` and `weight_decay`.
    pub config: AdamWConfig,
}

/// AdamW over a list of parameters (one group, or several), in the order given: the
/// order of `model.parameters()` (group after group) numbers the state as PyTorch's
/// `state_dict()` does.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    /// Each group's hyperparameters and how many parameters (in order) it holds.
    groups: Vec<(AdamWConfig, usize)>,
    /// The group of each parameter.
    group_of: Vec<usize>,
    state: Vec<Option<ParamState>>,
}

impl AdamW {
    /// `torch.optim.AdamW(params, **config)`; the tensors share storage with the model.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Result<Self> {
        Self::with_groups(vec![ParamGroup { params, config }])
    }

    /// `torch.optim.AdamW([{'params': ..., **config}, ...])`: several groups, each with
    /// its own hyperparameters (nanoGPT's `configure_optimizers` decays the matrices
    /// and not the rest). At least one group.
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Self> {
        if groups.is_empty() {
            return Err(Error::invalid("groups", "expected at least one"));
        }
        let mut params = Vec::new();
        let mut sizes = Vec::with_capacity(groups.len());
        let mut group_of = Vec::new();
        for (g, group) in groups.into_iter().enumerate() {
            group.config.validate()?;
            sizes.push((group.config, group.params.len()));
            group_of.extend(std::iter::repeat_n(g, group.params.len()));
            params.extend(group.params);
        }
        let state = params.iter().map(|_| None).collect();
        Ok(Self {
            params,
            groups: sizes,
            group_of,
            state,
        })
    }

    /// The first group's hyperparameters (the only group's, for [`AdamW::new`]).
    pub fn config(&self) -> &AdamWConfig {
        &self.groups[0].0
    }

    /// Every group's hyperparameters, with how many of [`AdamW::params`] (in order) it
    /// holds.
    pub fn groups(&self) -> &[(AdamWConfig, usize)] {
        &self.groups
    }

    /// Replaces the hyperparameters of group `g` (restoring a checkpoint's
    /// `param_groups`), after [`AdamWConfig::validate`].
    pub fn set_group_config(&mut self, g: usize, config: AdamWConfig) -> Result<()> {
        config.validate()?;
        let n = self.groups.len();
        let group = self
            .groups
            .get_mut(g)
            .ok_or_else(|| Error::invalid("group", format!("{g} is not below the {n} groups")))?;
        group.0 = config;
        Ok(())
    }

    /// `for g in optimizer.param_groups: g['lr'] = lr`.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if lr.is_nan() || lr < 0.0 {
            return Err(Error::config("lr", format!("invalid value {lr}")));
        }
        for (config, _) in &mut self.groups {
            config.lr = lr;
        }
        Ok(())
    }

    /// The parameters, by name, in order.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The per-parameter state, in parameter order; `None` for a parameter not yet
    /// stepped (PyTorch has no entry for it).
    pub fn state(&self) -> &[Option<ParamState>] {
        &self.state
    }

    /// Replaces the state (restoring a checkpoint): one entry per parameter, each
    /// `exp_avg` / `exp_avg_sq` shaped like its parameter.
    pub fn set_state(&mut self, state: Vec<Option<ParamState>>) -> Result<()> {
        if state.len() != self.params.len() {
            return Err(Error::invalid(
                "state",
                format!(
                    "expected {} entries, got {}",
                    self.params.len(),
                    state.len()
                ),
            ));
        }
        for ((name, p), s) in self.params.iter().zip(&state) {
            let Some(s) = s else { continue };
            for t in [&s.exp_avg, &s.exp_avg_sq] {
                if t.size() != p.size() || t.kind() != p.kind() {
                    return Err(Error::invalid(
                        format!("state of {name}"),
                        format!(
                            "expected {:?} {:?}, got {:?} {:?}",
                            p.kind(),
                            p.size(),
                            t.kind(),
                            t.size()
                        ),
                    ));
                }
            }
        }
        self.state = state;
        Ok(())
    }

    /// `optimizer.step()` with `grads[i]` the gradient of parameter `i`; an undefined
    /// gradient (`p.grad is None`) skips its parameter, as PyTorch does.
    pub fn f_step(&mut self, grads: &[Tensor]) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(Error::invalid(
                "grads",
                format!(
                    "expected {} (one per parameter), got {}",
                    self.params.len(),
                    grads.len()
                ),
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for (i, grad) in grads.iter().enumerate() {
                if grad.defined() {
                    self.step_one(i, grad)?;
                }
            }
            Ok(())
        })
    }

    /// The update of parameter `i`, in `_single_tensor_adam`'s order.
    fn step_one(&mut self, i: usize, grad: &Tensor) -> Result<()> {
        let AdamWConfig {
            lr,
            betas: (beta1, beta2),
            eps,
            weight_decay,
        } = self.groups[self.group_of[i]].0;
        let mut p = self.params[i].1.shallow_clone();
        if grad.size() != p.size() {
            return Err(Error::shape(
                format!("grads[{i}]"),
                format!("{:?} like {}", p.size(), self.params[i].0),
                &grad.size(),
            ));
        }
        let s = match &mut self.state[i] {
            Some(s) => s,
            empty => empty.insert(ParamState {
                step: 0.0,
                exp_avg: p.f_zeros_like()?,
                exp_avg_sq: p.f_zeros_like()?,
            }),
        };
        s.step += 1.0;
        if weight_decay != 0.0 {
            let _ = p.f_mul_scalar_(1.0 - lr * weight_decay)?;
        }
        let _ = s.exp_avg.f_lerp_(grad, 1.0 - beta1)?;
        let _ = s.exp_avg_sq.f_mul_scalar_(beta2)?;
        // addcmul_(grad, grad, value=1 - beta2); see the module docs.
        let _ = s
            .exp_avg_sq
            .f_addcmul_(&grad.f_mul_scalar(1.0 - beta2)?, grad)?;
        let bias_correction1 = 1.0 - beta1.powf(s.step);
        let bias_correction2 = 1.0 - beta2.powf(s.step);
        let step_size = lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.powf(0.5);
        let mut denom = s.exp_avg_sq.f_sqrt()?.f_div_scalar(bias_correction2_sqrt)?;
        let _ = denom.f_add_scalar_(eps)?;
        // addcdiv_(exp_avg, denom, value=-step_size); see the module docs.
        let _ = p.f_addcdiv_(&s.exp_avg.f_mul_scalar(-step_size)?, &denom)?;
        Ok(())
    }
}

impl AdamW {
    /// `optimizer.state_dict()` as `torch.optim.AdamW` returns it, for `torch.save`:
    /// `{'state': {i: {'step', 'exp_avg', 'exp_avg_sq'}}` for every stepped parameter
    /// (`step` a float32 scalar tensor), `'param_groups': [{every AdamW hyperparameter,
    /// in PyTorch 2.13's order, 'params': [indices]}]}`. The tensors are the state's own
    /// (not copies).
    pub fn state_dict(&self) -> TorchValue {
        let state = self
            .state
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                let entry = TorchValue::dict([
                    ("step", TorchValue::Tensor(Tensor::from(s.step as f32))),
                    ("exp_avg", TorchValue::Tensor(s.exp_avg.shallow_clone())),
                    (
                        "exp_avg_sq",
                        TorchValue::Tensor(s.exp_avg_sq.shallow_clone()),
                    ),
                ]);
                Some((TorchValue::Int(i as i64), entry))
            })
            .collect();
        let mut first = 0;
        let groups = self
            .groups
            .iter()
            .map(|(c, n)| {
                let params = (first..first + n).map(|i| TorchValue::Int(i as i64));
                first += n;
                TorchValue::dict([
                    ("weight_decay", TorchValue::Float(c.weight_decay)),
                    ("lr", TorchValue::Float(c.lr)),
                    (
                        "betas",
                        TorchValue::Tuple(vec![
                            TorchValue::Float(c.betas.0),
                            TorchValue::Float(c.betas.1),
                        ]),
                    ),
                    ("eps", TorchValue::Float(c.eps)),
                    ("amsgrad", TorchValue::Bool(false)),
                    ("maximize", TorchValue::Bool(false)),
                    ("foreach", TorchValue::None),
                    ("capturable", TorchValue::Bool(false)),
                    ("differentiable", TorchValue::Bool(false)),
                    ("fused", TorchValue::None),
                    ("decoupled_weight_decay", TorchValue::Bool(true)),
                    ("params", TorchValue::List(params.collect())),
                ])
            })
            .collect();
        TorchValue::dict([
            ("state", TorchValue::Dict(state)),
            ("param_groups", TorchValue::List(groups)),
        ])
    }
}

/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` on the CPU, `grads` in
/// `parameters`' order (which the rounding of the total depends on): each gradient's
/// 2-norm, the 2-norm of those, `clip_coef = max_norm / (total + 1e-6)` (which PyTorch
/// computes as `(total + 1e-6).reciprocal() * max_norm`), clamped to 1, multiplied into
/// every gradient. Returns the total norm before clipping.
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
    let norms = grads
        .iter()
        .map(|g| g.f_norm())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    let coef = total
        .f_add_scalar(1e-6)?
        .f_reciprocal()?
        .f_mul_scalar(max_norm)?
        .f_clamp_max(1.0)?;
    for g in grads {
        let _ = g.shallow_clone().f_mul_(&coef)?;
    }
    Ok(total)
}

impl AdamWConfig {
    /// This config with `lr`.
    pub(crate) fn with_lr(self, lr: f64) -> Self {
        Self { lr, ..self }
    }
}
