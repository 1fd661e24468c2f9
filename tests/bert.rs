//! The crate's BERT encoder against what sentence-transformers and transformers compute
//! for the pretrained all-MiniLM-L6-v2 (`tests/fixtures/bert/minilm.safetensors`, written
//! by scripts/bert_reference.py). The model itself comes from the package that
//! scripts/setup.sh installs; these tests fail, not skip, when it is missing.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use tch_attention::io::read_safetensors;
use tch_attention::models::bert::Pretrained;

use tch_attention::installed::default_model_dir;

struct Reference {
    sentences: Vec<String>,
    tensors: std::collections::BTreeMap<String, Tensor>,
}

fn reference() -> Reference {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/minilm.safetensors");
    let file = read_safetensors(&path).unwrap();
    let sentences = serde_json::from_str(&file.metadata["sentences"]).unwrap();
    Reference {
        sentences,
        tensors: file.tensors,
    }
}

fn model() -> Pretrained {
    let dir = default_model_dir().expect("the model package (installed by scripts/setup.sh)");
    Pretrained::load(&dir, Device::Cpu).unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn token_ids_equal_the_models_own_tokenizer() {
    let r = reference();
    let m = model();
    // The folder's tokenizer.json through Hugging Face's tokenizers (what `Pretrained`
    // loads), and the hand-written WordPiece over vocab.txt (folders without one).
    let word_piece = tch_attention::models::bert::Tokenizer::from_vocab_file(
        &m.dir.join("vocab.txt"),
        *m.tokenizer.options(),
    )
    .unwrap();
    for (name, tokenizer) in [("tokenizer.json", &m.tokenizer), ("vocab.txt", &word_piece)] {
        for (i, s) in r.sentences.iter().enumerate() {
            let expected = Vec::<i64>::try_from(&r.tensors[&format!("input_ids.{i}")]).unwrap();
            let got = tokenizer.encode(s).unwrap();
            assert_eq!(
                got.ids, expected,
                "{name}, sentence {i}: {s:?} -> {:?}",
                got.tokens
            );
        }
    }
}

#[test]
fn embeddings_match_sentence_transformers_within_1e_5() {
    let r = reference();
    let m = model();
    let sentences: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    // One padded batch, as sentence-transformers encoded them.
    let batch = m.embed(&sentences).unwrap();
    let err = max_abs(&batch, &r.tensors["embeddings"]);
    eprintln!("embeddings, one padded batch: max abs error {err:e}");
    assert!(err <= 1e-5, "batched: max abs error {err:e}");
    // One at a time, no padding.
    let single = Tensor::cat(
        &sentences
            .iter()
            .map(|s| m.embed(&[s]).unwrap())
            .collect::<Vec<_>>(),
        0,
    );
    let err = max_abs(&single, &r.tensors["embeddings_single"]);
    eprintln!("embeddings, one by one: max abs error {err:e}");
    assert!(err <= 1e-5, "one by one: max abs error {err:e}");
    let norms = batch.norm_scalaropt_dim(2, [1i64].as_slice(), false);
    assert!(max_abs(&norms, &Tensor::ones_like(&norms)) < 1e-6);
}

#[test]
fn attentions_and_pooler_match_transformers() {
    let r = reference();
    let m = model();
    let (enc, weights) = m.attentions(&r.sentences[0]).unwrap();
    assert_eq!(enc.tokens[..4], ["[CLS]", "the", "cat", ","]);
    let got = Tensor::stack(&weights, 0); // (layers, H, T, T)
    let err = max_abs(&got, &r.tensors["attentions"]);
    eprintln!("attention weights: max abs error {err:e}");
    assert!(err <= 1e-5, "attention weights: max abs error {err:e}");
    // The pooler is loaded too (sentence-transformers does not use it; BertModel does).
    let batch = m.batch(&[&r.sentences[0]]).unwrap();
    let out = m
        .model
        .f_forward(&batch.input_ids, &batch.attention_mask, false)
        .unwrap();
    let pooled = m.model.f_pool(&out.last_hidden_state).unwrap().unwrap();
    let err = max_abs(&pooled.get(0), &r.tensors["pooler_output"]);
    eprintln!("pooler output: max abs error {err:e}");
    assert!(err <= 1e-5, "pooler: max abs error {err:e}");
    assert_eq!(pooled.kind(), Kind::Float);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let m = model();
    let ids = Tensor::from_slice(&[101i64, 40000, 102]).view([1, 3]);
    let mask = Tensor::ones([1, 3], (Kind::Int64, Device::Cpu));
    let e = m.model.f_forward(&ids, &mask, false).unwrap_err();
    assert!(e.to_string().contains("input_ids"), "{e}");
    let long = Tensor::zeros([1, 513], (Kind::Int64, Device::Cpu));
    let e = m.model.f_forward(&long, &long, false).unwrap_err();
    assert!(e.to_string().contains("max_position_embeddings"), "{e}");
    let e = m
        .model
        .f_forward(&ids, &mask.view([3, 1]), false)
        .unwrap_err();
    assert!(e.to_string().contains("attention_mask"), "{e}");
    assert!(m.embed(&[]).is_err());
    let e = Pretrained::load(std::path::Path::new("/nonexistent"), Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
}

#[test]
fn a_missing_package_is_named_with_where_it_was_looked_for() {
    let looked = PathBuf::from("/nonexistent/site-packages");
    let e = tch_attention::installed::first_found("the model", vec![looked.clone()], |d| {
        d.join("config.json").is_file()
    })
    .unwrap_err();
    // The library says what is missing and where it looked, nothing about commands...
    match &e {
        tch_attention::error::Error::NotInstalled { looked_in, .. } => {
            assert_eq!(looked_in, &[looked])
        }
        other => panic!("expected NotInstalled, got {other:?}"),
    }
    let text = e.to_string();
    assert!(
        !text.contains("pip") && !text.contains("make") && !text.contains("--"),
        "{text}"
    );
    // ... `attn` adds how to install it (src/bin/attn-torch/model_dir.rs's own test).
}

#[test]
fn explain_ranks_the_reference_attention() {
    use tch_attention::models::bert::Heads;
    let r = reference();
    let m = model();
    let layer = 5;
    let e = m.explain(&r.sentences[0], layer, Heads::One(11)).unwrap();
    assert_eq!(e.tokens.len(), 14);
    // The ranking of "ran" (token 10) equals the one read off transformers' weights.
    let row =
        Vec::<f32>::try_from(r.tensors["attentions"].get(layer as i64).get(11).get(10)).unwrap();
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let top = &e.top(3, false).unwrap()[10];
    assert_eq!(top.token, "ran");
    for (k, (tok, w)) in top.top.iter().enumerate() {
        assert_eq!(tok, &e.tokens[order[k]]);
        assert!((*w - row[order[k]]).abs() < 1e-5);
    }
    assert!(m.explain(&r.sentences[0], 6, Heads::All).is_err());
    assert!(m.explain(&r.sentences[0], 0, Heads::One(12)).is_err());
}

#[test]
fn padding_and_the_attention_path_do_not_change_the_result() {
    let m = model();
    let short = "Hi!";
    let long = "The cat, which sat on the mat, ran away; the dog stayed.";
    // Alone, and padded to the long sentence's length in a batch.
    let alone = m.embed(&[short]).unwrap();
    let padded = m.embed(&[long, short]).unwrap().get(1).unsqueeze(0);
    let err = max_abs(&alone, &padded);
    assert!(err < 1e-6, "padding changed the embedding by {err:e}");
    // The fused SDPA (no weights) and the notebook's math path (weights) agree.
    let batch = m.batch(&[long, short]).unwrap();
    let fused = m
        .model
        .f_forward(&batch.input_ids, &batch.attention_mask, false)
        .unwrap();
    let math = m
        .model
        .f_forward(&batch.input_ids, &batch.attention_mask, true)
        .unwrap();
    // Hidden states reach magnitudes of several units, so the tolerance is relative too.
    let (a, b) = (&fused.last_hidden_state, &math.last_hidden_state);
    let err = max_abs(a, b);
    let scale = b.abs().max().double_value(&[]);
    assert!(
        a.allclose(b, 1e-5, 1e-5, false),
        "fused vs math: {err:e} at magnitude {scale}"
    );
    assert!(fused.attentions.is_empty());
    assert_eq!(math.attentions.len(), 6);
    // Padded keys get no attention; every row sums to one.
    let w = &math.attentions[0]; // (N, H, L, L)
    let n_short = batch.encodings[1].ids.len() as i64;
    let l = w.size()[3];
    let to_padding = w.get(1).narrow(-1, n_short, l - n_short);
    assert_eq!(to_padding.abs().max().double_value(&[]), 0.0);
    let sums = w.sum_dim_intlist(-1, false, Kind::Float);
    assert!(max_abs(&sums, &Tensor::ones_like(&sums)) < 1e-5);
}

#[test]
fn a_config_larger_than_its_weights_is_refused_before_allocating() {
    use tch_attention::models::bert::{BertConfig, BertModel};
    let dir = std::env::temp_dir().join(format!("tch-attention-bert-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("model.safetensors");
    let tiny = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    tch_attention::io::write_safetensors(
        &weights,
        [("embeddings.word_embeddings.weight", &tiny)],
        &Default::default(),
    )
    .unwrap();
    // What the real model says, made huge: 64 layers x 16384 is ~200 G parameters.
    let model_dir = default_model_dir().expect("the model package");
    let mut config = BertConfig::from_file(&model_dir.join("config.json")).unwrap();
    config.num_hidden_layers = 64;
    config.hidden_size = 16384;
    config.num_attention_heads = 128;
    config.intermediate_size = 65536;
    let start = std::time::Instant::now();
    let e = BertModel::load(config.clone(), &weights, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(e.contains("parameters") && e.contains("holds 6"), "{e}");
    // The count is the real model's: all-MiniLM-L6-v2 loads through the same check.
    let real = BertConfig::from_file(&model_dir.join("config.json")).unwrap();
    assert_eq!(BertModel::parameter_count(&real, true), Some(22_713_216));
    std::fs::remove_dir_all(&dir).ok();
}
