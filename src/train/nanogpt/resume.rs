//! `train.py --init_from=resume`: a `ckpt.pt` read back into a [`Trainer`] (the model,
//! AdamW's groups and state, the iteration and the best validation loss), each value of
//! the wrong type an error naming the file.

use std::path::Path;

use tch::{Device, Tensor};

use super::{TokenData, TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::io::TorchValue;
use crate::models::nanogpt::GPT2_PADDED_VOCAB;
use crate::train::adamw::{AdamWConfig, ParamState};

impl Trainer {
    /// `init_from='resume'` from `ckpt` (a `ckpt.pt` `train.py` or [`Trainer::save`]
    /// wrote): `torch.manual_seed(seed)` and `GPT(model_args)` as from scratch (so the
    /// draws that follow are `train.py`'s), then the checkpoint's model (keys with
    /// torch.compile's `_orig_mod.` accepted), optimizer state and hyperparameters,
    /// `iter_num` and `best_val_loss`.
    ///
    /// `train.py` takes `n_layer`, `n_head`, `n_embd`, `block_size`, `bias` and
    /// `vocab_size` from the checkpoint whatever the settings say; here a setting that
    /// disagrees (or a vocabulary other than the data's) is an error naming both values.
    pub fn resume(
        data: TokenData,
        config: TrainConfig,
        device: Device,
        ckpt: &Path,
    ) -> Result<Self> {
        let value = crate::io::read_torch_object(ckpt)?;
        let c = Ckpt {
            name: ckpt.display().to_string(),
        };
        let top = c.dict(&value, "the checkpoint")?;
        let args = c.dict(c.get(top, "model_args")?, "model_args")?;
        let vocab = data.meta_vocab_size.unwrap_or(GPT2_PADDED_VOCAB);
        let fixed = [
            ("n_layer", config.n_layer),
            ("n_head", config.n_head),
            ("n_embd", config.n_embd),
            ("block_size", config.block_size),
            ("bias", i64::from(config.bias)),
            ("vocab_size", vocab),
        ];
        for (key, want) in fixed {
            let got = c.int(c.get(args, key)?, key)?;
            if got != want {
                return Err(Error::config(
                    key,
                    format!(
                        "{} was trained with {key} = {got}, not {want}; it cannot change on resume",
                        c.name
                    ),
                ));
            }
        }
        let mut trainer = Self::new(data, config, device)?;
        let model = c.dict(c.get(top, "model")?, "model")?;
        let tensors = model
            .iter()
            .map(|(k, v)| {
                Ok((
                    c.str(k, "a model key")?.to_string(),
                    c.tensor(v, "a model value")?.shallow_clone(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        trainer.model.load_state_dict(&tensors)?;
        trainer.load_optimizer(&c, c.get(top, "optimizer")?)?;
        trainer.iter_num = c.int(c.get(top, "iter_num")?, "iter_num")?;
        trainer.best_val_loss = match c.get(top, "best_val_loss")? {
            TorchValue::Tensor(t) => t.f_double_value(&[])?,
            other => c.float(other, "best_val_loss")?,
        };
        Ok(trainer)
    }

    /// `optimizer.load_state_dict(...)`: groups and their sizes must match; each
    /// group's hyperparameters and every parameter's state come from the checkpoint.
    fn load_optimizer(&mut self, c: &Ckpt, v: &TorchValue) -> Result<()> {
        let opt = c.dict(v, "optimizer")?;
        let groups = c.list(c.get(opt, "param_groups")?, "param_groups")?;
        let own: Vec<(AdamWConfig, usize)> = self.optimizer.groups().to_vec();
        if groups.len() != own.len() {
            return Err(c.err(format!(
                "the optimizer has {} param groups, expected {}",
                groups.len(),
                own.len()
            )));
        }
        let mut ids = Vec::new();
        for (g, (saved, (_, n))) in groups.iter().zip(own).enumerate() {
            let saved = c.dict(saved, "a param group")?;
            let params = c.list(c.get(saved, "params")?, "params")?;
            if params.len() != n {
                return Err(c.err(format!(
                    "param group {g} has {} parameters, the model's {n}",
                    params.len()
                )));
            }
            for p in params {
                ids.push(c.int(p, "a parameter id")?);
            }
            let f = |k: &str| c.float(c.get(saved, k)?, k);
            let betas = c.list(c.get(saved, "betas")?, "betas")?;
            let [b1, b2] = betas else {
                return Err(c.err("betas is not a pair".into()));
            };
            let config = AdamWConfig {
                lr: f("lr")?,
                betas: (c.float(b1, "betas")?, c.float(b2, "betas")?),
                eps: f("eps")?,
                weight_decay: f("weight_decay")?,
            };
            self.optimizer.set_group_config(g, config)?;
        }
        self.load_param_states(c, c.dict(c.get(opt, "state")?, "state")?, &ids)
    }

    /// The optimizer's `state`: each entry under its saved id, `ids` listing the saved
    /// id of each of the optimizer's parameters in order; tensors moved to the
    /// parameter's dtype and device, as `optimizer.load_state_dict` moves them.
    fn load_param_states(
        &mut self,
        c: &Ckpt,
        saved: &[(TorchValue, TorchValue)],
        ids: &[i64],
    ) -> Result<()> {
        let params: Vec<Tensor> = self
            .optimizer
            .params()
            .iter()
            .map(|(_, p)| p.shallow_clone())
            .collect();
        let mut state: Vec<Option<ParamState>> = params.iter().map(|_| None).collect();
        for (k, entry) in saved {
            let id = c.int(k, "a state key")?;
            let at = ids
                .iter()
                .position(|&i| i == id)
                .ok_or_else(|| c.err(format!("state of parameter {id}, which no group lists")))?;
            let e = c.dict(entry, "a parameter's state")?;
            let like = |key: &str| -> Result<Tensor> {
                let t = c.tensor(c.get(e, key)?, key)?;
                Ok(t.f_to_kind(params[at].kind())?
                    .f_to_device(params[at].device())?)
            };
            let step = match c.get(e, "step")? {
                TorchValue::Tensor(t) => t.f_double_value(&[])?,
                other => c.float(other, "step")?,
            };
            state[at] = Some(ParamState {
                step,
                exp_avg: like("exp_avg")?,
                exp_avg_sq: like("exp_avg_sq")?,
            });
        }
        self.optimizer.set_state(state)
    }
}

/// Reading a checkpoint's values, each wrong type an error naming the file.
struct Ckpt {
    name: String,
}

impl Ckpt {
    fn err(&self, reason: String) -> Error {
        Error::malformed(&self.name, reason)
    }

    fn expected(&self, what: &str, ty: &str) -> Error {
        self.err(format!("{what} is not {ty}"))
    }

    fn get<'v>(&self, dict: &'v [(TorchValue, TorchValue)], key: &str) -> Result<&'v TorchValue> {
        dict.iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
            .ok_or_else(|| self.err(format!("has no {key}")))
    }

    fn dict<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v [(TorchValue, TorchValue)]> {
        v.as_dict().ok_or_else(|| self.expected(what, "a dict"))
    }

    fn list<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v [TorchValue]> {
        v.as_list().ok_or_else(|| self.expected(what, "a list"))
    }

    fn int(&self, v: &TorchValue, what: &str) -> Result<i64> {
        v.as_int().ok_or_else(|| self.expected(what, "an int"))
    }

    fn float(&self, v: &TorchValue, what: &str) -> Result<f64> {
        v.as_float().ok_or_else(|| self.expected(what, "a float"))
    }

    fn str<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v str> {
        v.as_str().ok_or_else(|| self.expected(what, "a str"))
    }

    fn tensor<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v Tensor> {
        v.as_tensor().ok_or_else(|| self.expected(what, "a tensor"))
    }
}
