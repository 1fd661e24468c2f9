//! The constructors draw the same initial parameters as PyTorch's after the same
//! `manual_seed` (tests/fixtures/init.safetensors, from scripts/make_fixtures.py).

use std::path::PathBuf;

use tch::nn::{Path, VarStore};
use tch::Device;
use tch_attention::attention::multihead_attention::{MultiheadAttention, MultiheadAttentionConfig};
use tch_attention::io::read_safetensors;
use tch_attention::models::lecture::{Head, HeadConfig};
use tch_attention::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

type Build = fn(&Path) -> tch_attention::Result<()>;

#[test]
fn constructors_draw_as_pytorch_does() {
    let file = read_safetensors(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/init.safetensors"),
    )
    .expect("fixture");
    let modules: [(&str, i64, Build); 6] = [
        ("head", 11, |p| {
            Head::new(p, HeadConfig::new(12, 4, 6)).map(drop)
        }),
        ("multi_head", 12, |p| {
            MultiHeadAttention::new(p, MultiHeadConfig::new(12, 3, 4, 6)).map(drop)
        }),
        ("causal_self_attention", 13, |p| {
            CausalSelfAttention::new(p, CausalSelfAttentionConfig::new(12, 3, 6)).map(drop)
        }),
        ("causal_self_attention_nobias", 14, |p| {
            CausalSelfAttention::new(p, CausalSelfAttentionConfig::new(12, 3, 6).with_bias(false))
                .map(drop)
        }),
        ("multihead_attention", 15, |p| {
            MultiheadAttention::new(p, MultiheadAttentionConfig::new(12, 3)).map(drop)
        }),
        ("multihead_attention_kv", 16, |p| {
            let config = MultiheadAttentionConfig::new(12, 3)
                .with_add_bias_kv(true)
                .with_kdim(5)
                .with_vdim(7);
            MultiheadAttention::new(p, config).map(drop)
        }),
    ];
    for (prefix, seed, build) in modules {
        let vs = VarStore::new(Device::Cpu);
        tch::manual_seed(seed);
        build(&(vs.root() / prefix)).expect(prefix);
        let ours = vs.variables();
        let theirs: Vec<_> = file
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{prefix}.")))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{prefix}: parameter count");
        for (name, expected) in theirs {
            let got = ours
                .get(name)
                .unwrap_or_else(|| panic!("{prefix}: no {name}"));
            assert!(
                got.detach().equal(expected),
                "{name}: not PyTorch's initial values"
            );
        }
    }
}
