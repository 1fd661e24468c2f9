//! nanoGPT's data folder as its `prepare.py` writes it: `train.bin` and `val.bin`
//! (uint16 tokens) and optionally `meta.pkl` (`vocab_size`, `itos`, `stoi`), read with
//! the crate's restricted unpickler; batches read their windows from the files, as
//! `np.memmap` does, so a corpus bigger than memory trains too. And
//! `data/shakespeare_char/prepare.py` itself ([`prepare_chars`]).

use std::fs::File;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::chars::{universal_newlines, CharVocab, Split};
use crate::error::{Error, Result};
use crate::io::torch::pickle::{unpickle, Value};
use crate::io::{Overwrite, TorchValue};
use crate::models::nanogpt::GPT2_PADDED_VOCAB;

/// One of `train.bin` / `val.bin`: uint16 tokens, read where a batch needs them.
#[derive(Debug)]
pub struct TokenFile {
    file: File,
    len: i64,
    name: String,
}

impl TokenFile {
    /// Opens `path`, checking it holds whole uint16 tokens, more than `block_size` of
    /// them, every one below `vocab_size` (read through once, in chunks).
    pub fn open(path: &Path, block_size: i64, vocab_size: i64) -> Result<Self> {
        use std::os::unix::fs::FileExt;
        let name = path.display().to_string();
        let io = |source| Error::Io {
            path: name.clone(),
            source,
        };
        let (file, bytes) = crate::io::open_regular(path)?;
        if bytes % 2 != 0 {
            return Err(Error::malformed(
                &name,
                format!("truncated: {bytes} bytes is not a whole number of uint16 tokens"),
            ));
        }
        let len = (bytes / 2) as i64;
        if len <= block_size {
            return Err(Error::malformed(
                &name,
                format!("holds {len} tokens; batches need more than block_size = {block_size}"),
            ));
        }
        let mut chunk = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < bytes {
            let n = chunk.len().min((bytes - at) as usize);
            file.read_exact_at(&mut chunk[..n], at).map_err(io)?;
            let max = chunk[..n]
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .max()
                .unwrap_or(0);
            if i64::from(max) >= vocab_size {
                return Err(Error::malformed(
                    &name,
                    format!("token {max} is not below the vocabulary size {vocab_size}"),
                ));
            }
            at += n as u64;
        }
        Ok(Self { file, len, name })
    }

    /// Tokens in the file.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether the file holds no token (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `get_batch`: `ix = torch.randint(len(data) - block_size, (batch_size,))` on the
    /// default generator, then the windows `data[i:i+block_size]` and
    /// `data[i+1:i+1+block_size]` as int64 `(x, y)`, both `(batch_size, block_size)` on
    /// `device`.
    pub fn get_batch(
        &self,
        batch_size: i64,
        block_size: i64,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        use std::os::unix::fs::FileExt;
        let ix = Tensor::f_randint(
            self.len - block_size,
            [batch_size],
            (Kind::Int64, Device::Cpu),
        )?;
        let ix: Vec<i64> = Vec::<i64>::try_from(&ix)?;
        let t = block_size as usize;
        let mut window = vec![0u8; 2 * (t + 1)];
        let (mut x, mut y) = (
            Vec::with_capacity(ix.len() * t),
            Vec::with_capacity(ix.len() * t),
        );
        for i in ix {
            self.file
                .read_exact_at(&mut window, 2 * i as u64)
                .map_err(|source| Error::Io {
                    path: self.name.clone(),
                    source,
                })?;
            let tokens: Vec<i64> = window
                .chunks_exact(2)
                .map(|b| i64::from(u16::from_le_bytes([b[0], b[1]])))
                .collect();
            x.extend_from_slice(&tokens[..t]);
            y.extend_from_slice(&tokens[1..]);
        }
        let shape = [batch_size, block_size];
        let x = Tensor::f_from_slice(&x)?
            .f_view(shape)?
            .f_to_device(device)?;
        let y = Tensor::f_from_slice(&y)?
            .f_view(shape)?
            .f_to_device(device)?;
        Ok((x, y))
    }
}

/// A data folder as `prepare.py` writes it.
#[derive(Debug)]
pub struct TokenData {
    /// `train.bin`.
    pub train: TokenFile,
    /// `val.bin`.
    pub val: TokenFile,
    /// `meta.pkl`'s `vocab_size`, when there is one.
    pub meta_vocab_size: Option<i64>,
    /// `meta.pkl`'s `itos` (id to string) in id order, when there is one.
    pub itos: Option<Vec<String>>,
    /// The folder's name (`train.py`'s `dataset`).
    pub dataset: String,
}

impl TokenData {
    /// Opens `dir/train.bin`, `dir/val.bin` and `dir/meta.pkl` if present; the tokens are
    /// checked against the vocabulary: `meta.pkl`'s, else GPT-2's padded 50304
    /// ([`GPT2_PADDED_VOCAB`]).
    pub fn open(dir: &Path, block_size: i64) -> Result<Self> {
        let meta_path = dir.join("meta.pkl");
        let (meta_vocab_size, itos) = if meta_path.exists() {
            let (v, itos) = read_meta(&meta_path)?;
            (Some(v), itos)
        } else {
            (None, None)
        };
        let vocab = meta_vocab_size.unwrap_or(GPT2_PADDED_VOCAB);
        Ok(Self {
            train: TokenFile::open(&dir.join("train.bin"), block_size, vocab)?,
            val: TokenFile::open(&dir.join("val.bin"), block_size, vocab)?,
            meta_vocab_size,
            itos,
            dataset: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    /// The split `get_batch` names.
    pub fn split(&self, split: Split) -> &TokenFile {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }
}

/// `meta.pkl`: `vocab_size` and, when it is a char vocabulary, `itos` in id order. Read
/// with the restricted unpickler: a pickle that would import or call anything is only
/// data here, and anything but plain data where these are expected is an error.
pub fn read_meta(path: &Path) -> Result<(i64, Option<Vec<String>>)> {
    let name = path.display().to_string();
    let bytes = crate::io::read_regular(path)?;
    let err = |reason: String| Error::malformed(&name, reason);
    let value = unpickle(&bytes, &mut |_| {
        Err("meta.pkl holds no persistent ids".into())
    })
    .map_err(err)?;
    let Value::Dict(meta) = &value else {
        return Err(err(format!("holds {}, not a dict", value.describe())));
    };
    let meta = meta.borrow();
    let vocab_size = match meta.get_str("vocab_size") {
        Some(Value::Int(v)) if *v > 0 => *v,
        Some(other) => return Err(err(format!("vocab_size is {other:?}, not a positive int"))),
        None => return Err(err("has no vocab_size".into())),
    };
    let itos = match meta.get_str("itos") {
        None => None,
        Some(Value::Dict(itos)) => {
            let itos = itos.borrow();
            let mut out = vec![None; itos.len()];
            for (k, v) in itos.iter() {
                let (Some(i), Some(s)) = (k.as_int(), v.as_str()) else {
                    return Err(err("itos is not a dict of int to str".into()));
                };
                match usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                    Some(slot) => *slot = Some(s.to_string()),
                    None => return Err(err(format!("itos has id {i} out of 0..{}", itos.len()))),
                }
            }
            Some(
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err("itos skips an id".into()))?,
            )
        }
        Some(other) => return Err(err(format!("itos is {}, not a dict", other.describe()))),
    };
    Ok((vocab_size, itos))
}

/// `data/shakespeare_char/prepare.py` for the text at `text`: its characters sorted into
/// a vocabulary, the first 90% (`int(n * 0.9)` characters) into `dir/train.bin`, the
/// rest into `dir/val.bin` (uint16 ids), and `dir/meta.pkl` (`{'vocab_size', 'itos',
/// 'stoi'}`, pickled), each written atomically. The text is read as Python reads it
/// (UTF-8, universal newlines). Returns the vocabulary's size.
pub fn prepare_chars(text: &Path, dir: &Path) -> Result<usize> {
    let raw = crate::io::read_text(text)?;
    let text_str = universal_newlines(&raw);
    let vocab = CharVocab::from_text(&text_str);
    if vocab.len() > 1 << 16 {
        return Err(Error::malformed(
            text.display().to_string(),
            format!("{} distinct characters do not fit uint16 ids", vocab.len()),
        ));
    }
    let ids = vocab.encode(&text_str)?;
    let n = (ids.len() as f64 * 0.9) as usize;
    let bytes =
        |ids: &[i64]| -> Vec<u8> { ids.iter().flat_map(|&i| (i as u16).to_le_bytes()).collect() };
    let write =
        |name: &str, data: &[u8]| crate::io::write_file(&dir.join(name), data, Overwrite::Replace);
    write("train.bin", &bytes(&ids[..n]))?;
    write("val.bin", &bytes(&ids[n..]))?;
    let chars = vocab.chars();
    let itos = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (TorchValue::Int(i as i64), TorchValue::str(c.to_string())))
        .collect();
    let stoi = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (TorchValue::str(c.to_string()), TorchValue::Int(i as i64)))
        .collect();
    let meta = TorchValue::dict([
        ("vocab_size", TorchValue::Int(vocab.len() as i64)),
        ("itos", TorchValue::Dict(itos)),
        ("stoi", TorchValue::Dict(stoi)),
    ]);
    write("meta.pkl", &crate::io::to_pickle(&meta)?)?;
    Ok(vocab.len())
}
