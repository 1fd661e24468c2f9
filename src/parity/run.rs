//! Running a parity case: the case's module built from its config on `device`, its
//! parameters loaded strictly, `manual_seed(seed)`, the forward pass, and (when the
//! case has `input.grad_output`) the backward pass of `sum(output * grad_output)`.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::case::Case;
use super::spec::{
    CausalSelfAttentionArgs, HeadArgs, MultiHeadArgs, MultiheadAttentionArgs,
    MultiheadAttentionForward, SdpaForward, Spec,
};
use crate::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use crate::attention::mask::Mask;
use crate::attention::multihead_attention::{MhaOptions, MultiheadAttention};
use crate::attention::{Alibi, Documents, Window};
use crate::checkpoint::load_into;
use crate::error::Result;
use crate::models::lecture::{Head, MultiHeadAttention};
use crate::models::nanogpt::CausalSelfAttention;

/// What running a case produced, named as `attn run` writes it: `output`,
/// `attn_weights`, `grad.input.<name>`, `grad.param.<name>`.
#[derive(Debug)]
pub struct Outcome {
    /// The tensors, by those names.
    pub tensors: BTreeMap<String, Tensor>,
}

/// A built module's forward pass: the output and, for `multihead_attention`, the weights.
type Forward = Box<dyn Fn() -> Result<(Tensor, Option<Tensor>)>>;

/// The case's inputs on the device, by name.
type Inputs = BTreeMap<String, Tensor>;

impl Case {
    /// Runs the case's module on its inputs on `device`: `manual_seed(seed)` right before
    /// the forward pass, then, when `input.grad_output` is present, the backward pass of
    /// `sum(output * grad_output)`.
    ///
    /// Dropout draws from libtorch's process-wide default generator, as PyTorch's does:
    /// cases with dropout reproduce PyTorch only when no other thread draws from it
    /// between the seed and the forward pass.
    pub fn run(&self, device: Device) -> Result<Outcome> {
        let grad_output = match self.inputs.get("grad_output") {
            Some(g) => Some(g.f_to_device(device)?),
            None => None,
        };
        let mut vs = VarStore::new(device);
        vs.set_kind(self.kind());
        let inputs = self.inputs_on(device, grad_output.is_some())?;
        let forward = match &self.spec {
            Spec::Head(args, _) => self.head(&vs, args, &inputs)?,
            Spec::MultiHead(args, _) => self.multi_head(&vs, args, &inputs)?,
            Spec::CausalSelfAttention(args, _) => self.causal_self_attention(&vs, args, &inputs)?,
            Spec::MultiheadAttention(args, f) => self.multihead_attention(&vs, args, f, &inputs)?,
            Spec::Sdpa(f) => self.sdpa(f, &inputs)?,
        };
        load_into(&vs, &self.params, &self.path.display().to_string())?;
        tch::manual_seed(self.seed);
        let (output, weights) = forward()?;
        let mut tensors = match &grad_output {
            Some(g) => self.backward(&output, g, &inputs, &vs)?,
            None => BTreeMap::new(),
        };
        tensors.insert("output".into(), output.detach());
        if let Some(w) = weights {
            tensors.insert("attn_weights".into(), w.detach());
        }
        Ok(Outcome { tensors })
    }

    /// The inputs on `device`. With a backward pass, the floating ones among
    /// x/query/key/value/sinks require grad: they take part in the gradient.
    fn inputs_on(&self, device: Device, backward: bool) -> Result<Inputs> {
        let mut inputs = BTreeMap::new();
        for (name, t) in &self.inputs {
            let t = t.f_to_device(device)?;
            let wants_grad = backward
                && t.is_floating_point()
                && ["x", "query", "key", "value", "sinks"].contains(&name.as_str());
            let t = if wants_grad {
                t.f_set_requires_grad(true)?
            } else {
                t
            };
            inputs.insert(name.clone(), t);
        }
        Ok(inputs)
    }

    /// The input `name`, sharing the tensor (and its gradient) with `inputs`.
    fn input(&self, inputs: &Inputs, name: &str) -> Result<Tensor> {
        inputs
            .get(name)
            .map(Tensor::shallow_clone)
            .ok_or_else(|| self.err(format!("no input.{name} tensor")))
    }

    /// Refuses a config whose parameters would be larger than any the case holds:
    /// loading them would fail anyway, and building them first could exhaust memory
    /// (a hostile `block_size` of 2^40 makes a `tril` of 2^80 elements).
    fn check_param_sizes(&self, shapes: &[[i64; 2]]) -> Result<()> {
        let largest = self.params.values().map(Tensor::numel).max().unwrap_or(0);
        for shape in shapes {
            let numel = shape[0].checked_mul(shape[1]);
            if numel.is_none_or(|n| usize::try_from(n).map_or(true, |n| n > largest)) {
                return Err(self.err(format!(
                    "config: a parameter of shape {shape:?} is larger than any param.* tensor \
                     of the case (the largest has {largest} elements)"
                )));
            }
        }
        Ok(())
    }

    fn head(&self, vs: &VarStore, args: &HeadArgs, inputs: &Inputs) -> Result<Forward> {
        let cfg = args.config();
        cfg.validate()?;
        let (c, hs, bs) = (cfg.n_embd, cfg.head_size, cfg.block_size);
        self.check_param_sizes(&[[hs, c], [bs, bs]])?;
        let m = Head::new(vs.root(), cfg)?;
        let (x, train) = (self.input(inputs, "x")?, self.spec.train());
        Ok(Box::new(move || Ok((m.f_forward_t(&x, train)?, None))))
    }

    fn multi_head(&self, vs: &VarStore, args: &MultiHeadArgs, inputs: &Inputs) -> Result<Forward> {
        let cfg = args.config();
        cfg.validate()?;
        let (c, nh, hs, bs) = (cfg.n_embd, cfg.num_heads, cfg.head_size, cfg.block_size);
        self.check_param_sizes(&[[hs, c], [bs, bs], [c, nh.saturating_mul(hs)]])?;
        let m = MultiHeadAttention::new(vs.root(), cfg)?;
        let (x, train) = (self.input(inputs, "x")?, self.spec.train());
        Ok(Box::new(move || Ok((m.f_forward_t(&x, train)?, None))))
    }

    fn causal_self_attention(
        &self,
        vs: &VarStore,
        args: &CausalSelfAttentionArgs,
        inputs: &Inputs,
    ) -> Result<Forward> {
        let cfg = args.config();
        cfg.validate()?;
        self.check_param_sizes(&[[cfg.n_embd, cfg.n_embd]])?;
        let mut m = CausalSelfAttention::new(vs.root(), cfg)?;
        match (cfg.alibi, inputs.get("alibi_slopes")) {
            (_, None) => {}
            (true, Some(slopes)) => m = m.with_alibi_slopes(slopes.shallow_clone())?,
            (false, Some(_)) => {
                return Err(self.err("input.alibi_slopes needs config \"alibi\": true"))
            }
        }
        let (x, train) = (self.input(inputs, "x")?, self.spec.train());
        let documents = inputs.get("document_ids").map(Tensor::shallow_clone);
        Ok(Box::new(move || {
            let y = match &documents {
                Some(ids) => m.f_forward_documents_t(&x, ids, train)?,
                None => m.f_forward_t(&x, train)?,
            };
            Ok((y, None))
        }))
    }

    fn multihead_attention(
        &self,
        vs: &VarStore,
        args: &MultiheadAttentionArgs,
        f: &MultiheadAttentionForward,
        inputs: &Inputs,
    ) -> Result<Forward> {
        let cfg = args.config();
        cfg.validate()?;
        let e = cfg.embed_dim;
        self.check_param_sizes(&[[e, e], [e, cfg.kdim()], [e, cfg.vdim()]])?;
        let m = MultiheadAttention::new(vs.root(), cfg)?;
        let [q, k, v] = ["query", "key", "value"].map(|n| self.input(inputs, n));
        let (q, k, v) = (q?, k?, v?);
        let kpm = inputs.get("key_padding_mask").map(Tensor::shallow_clone);
        let attn_mask = inputs.get("attn_mask").map(Tensor::shallow_clone);
        let (need_weights, average_attn_weights, is_causal) = (
            f.need_weights.unwrap_or(true),
            f.average_attn_weights.unwrap_or(true),
            f.is_causal.unwrap_or(false),
        );
        let train = self.spec.train();
        Ok(Box::new(move || {
            // nn.MultiheadAttention's convention: bool true = masked out.
            let mha = |t: &Option<Tensor>| {
                t.as_ref()
                    .map(|t| Mask::from_mha(t.shallow_clone()))
                    .transpose()
            };
            let options = MhaOptions {
                key_padding_mask: mha(&kpm)?,
                attn_mask: mha(&attn_mask)?,
                need_weights,
                average_attn_weights,
                is_causal,
            };
            m.f_forward_t(&q, &k, &v, &options, train)
        }))
    }

    fn sdpa(&self, f: &SdpaForward, inputs: &Inputs) -> Result<Forward> {
        let [q, k, v] = ["query", "key", "value"].map(|n| self.input(inputs, n));
        let (q, k, v) = (q?, k?, v?);
        let get = |name: &str| inputs.get(name).map(Tensor::shallow_clone);
        let mask = get("attn_mask");
        let sinks = get("sinks");
        let alibi = self.alibi(f, get("alibi_slopes"))?;
        let documents = self.documents(inputs)?;
        let window = f.window.map(|[l, r]| Window::new(l, r)).transpose()?;
        let f = f.clone();
        Ok(Box::new(move || {
            let options = SdpaOptions {
                attn_mask: mask
                    .as_ref()
                    .map(|m| Mask::from_sdpa(m.shallow_clone()))
                    .transpose()?,
                dropout_p: f.dropout_p.unwrap_or(0.0),
                is_causal: f.is_causal.unwrap_or(false),
                scale: f.scale,
                enable_gqa: f.enable_gqa.unwrap_or(false),
                window,
                softcap: f.softcap,
                sinks: sinks.as_ref().map(Tensor::shallow_clone),
                alibi: alibi.as_ref().map(Alibi::shallow_clone),
                documents: documents.as_ref().map(Documents::shallow_clone),
                ..SdpaOptions::default()
            };
            Ok((scaled_dot_product_attention(&q, &k, &v, &options)?, None))
        }))
    }

    /// `forward.alibi` with `input.alibi_slopes` (given slopes) or without (BLOOM's).
    fn alibi(&self, f: &SdpaForward, slopes: Option<Tensor>) -> Result<Option<Alibi>> {
        Ok(match (f.alibi.unwrap_or(false), slopes) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(self.err("input.alibi_slopes needs forward \"alibi\": true"))
            }
            (true, None) => Some(Alibi::Bloom),
            (true, Some(t)) => Some(Alibi::Slopes(t)),
        })
    }

    /// The documents of `input.document_ids` (shared), `input.document_ids_q` with
    /// `input.document_ids_k`, or `input.cu_seqlens_q` with `input.cu_seqlens_k`.
    fn documents(&self, inputs: &Inputs) -> Result<Option<Documents>> {
        let pairs = [
            ("document_ids_q", "document_ids_k"),
            ("cu_seqlens_q", "cu_seqlens_k"),
        ];
        let given: Vec<_> = [
            "document_ids",
            pairs[0].0,
            pairs[0].1,
            pairs[1].0,
            pairs[1].1,
        ]
        .into_iter()
        .filter(|n| inputs.contains_key(*n))
        .collect();
        Ok(match given.as_slice() {
            [] => None,
            ["document_ids"] => Some(Documents::same(self.input(inputs, "document_ids")?)?),
            [a, b] if (*a, *b) == pairs[0] => Some(Documents::new(
                self.input(inputs, a)?,
                self.input(inputs, b)?,
            )?),
            [a, b] if (*a, *b) == pairs[1] => Some(Documents::from_cu_seqlens(
                &self.input(inputs, a)?,
                &self.input(inputs, b)?,
            )?),
            _ => {
                return Err(self.err(format!(
                    "documents: give input.document_ids, or document_ids_q with \
                     document_ids_k, or cu_seqlens_q with cu_seqlens_k; got {given:?}"
                )))
            }
        })
    }

    /// The backward pass of `sum(output * grad_output)`: the gradients of the inputs that
    /// require grad and of every parameter, named `grad.input.*` and `grad.param.*`.
    fn backward(
        &self,
        output: &Tensor,
        grad_output: &Tensor,
        inputs: &Inputs,
        vs: &VarStore,
    ) -> Result<BTreeMap<String, Tensor>> {
        if grad_output.size() != output.size() {
            return Err(self.err(format!(
                "input.grad_output: expected shape {:?}, got {:?}",
                output.size(),
                grad_output.size()
            )));
        }
        output
            .f_mul(&grad_output.f_to_kind(output.kind())?)?
            .f_sum(None::<Kind>)?
            .f_backward()?;
        let mut tensors = BTreeMap::new();
        for (name, t) in inputs {
            if t.requires_grad() {
                tensors.insert(format!("grad.input.{name}"), t.grad());
            }
        }
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            if t.requires_grad() {
                tensors.insert(format!("grad.param.{name}"), t.grad());
            }
        }
        Ok(tensors)
    }
}
