//! [`convert`](super::convert) for files bigger than memory: a checkpoint file in,
//! a safetensors file out, one block at a time.
//!
//! The blocks are found from the input's header alone (stand-ins, [`super::stand_ins`]).
//! A first pass reads each block, converts it and notes what it gives (names, dtypes,
//! shapes: the output's header needs them all before the first tensor); a second pass
//! converts each block again and writes it, then copies the keys outside the blocks one
//! at a time. At any moment the process holds one block, never the file: memory does not
//! grow with the checkpoint. The bytes written are those [`super::convert`] and
//! [`crate::io::write_safetensors`] would write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tch::Tensor;

use super::{
    at_prefix, candidate_prefixes, detect_with, emit, extract, extract_with, none_found,
    normalise_prefix, stand_ins, ConvertOptions, Layout,
};
use crate::error::{Error, Result};
use crate::io::{
    contiguous_checked, write_safetensors_streamed, CheckpointFile, Overwrite, Planned,
};

/// A block to convert: its prefix and the keys it reads.
struct BlockKeys {
    prefix: String,
    keys: BTreeSet<String>,
}

/// Converts the checkpoint file `input` (safetensors or `torch.save`) from `from` to `to`
/// as [`super::convert`] does, and writes the result to `output` as safetensors, with the
/// input's metadata plus `layout` and `converted_from`. Returns the tensors written.
pub fn convert_file(
    input: &Path,
    output: &Path,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
    overwrite: Overwrite,
) -> Result<usize> {
    let file = CheckpointFile::open(input)?;
    let blocks = if from == to {
        Vec::new()
    } else {
        plan_blocks(&file, from, to, opts)?
    };
    let consumed: BTreeSet<&String> = blocks.iter().flat_map(|(b, _)| &b.keys).collect();
    let passthrough: Vec<&String> = file
        .tensors
        .keys()
        .filter(|k| !consumed.contains(k))
        .collect();
    let plan = output_plan(&file, &blocks, &passthrough)?;
    let mut metadata = file.metadata.clone();
    metadata.insert("layout".into(), to.name().into());
    metadata.insert("converted_from".into(), from.name().into());
    write_safetensors_streamed(output, &plan, &metadata, overwrite, |sink| {
        for (block, _) in &blocks {
            for (key, t) in convert_block(&file, block, from, to, opts)? {
                sink.put(&key, &t)?;
            }
        }
        for key in &passthrough {
            let t = load(&file, key)?;
            sink.put(key, &t)?;
        }
        Ok(())
    })?;
    Ok(plan.len())
}

/// The output's tensors: the converted blocks', then the keys passed through. A
/// converted key that is already there is an error, as in [`super::convert`].
fn output_plan(
    file: &CheckpointFile,
    blocks: &[(BlockKeys, Vec<Planned>)],
    passthrough: &[&String],
) -> Result<Vec<Planned>> {
    let mut plan: Vec<Planned> = Vec::new();
    let mut keys: BTreeSet<&String> = passthrough.iter().copied().collect();
    for (key, kind, shape) in blocks.iter().flat_map(|(_, out)| out) {
        if !keys.insert(key) {
            return Err(Error::malformed(
                file.name(),
                format!("{key}: the converted block would overwrite a key already there"),
            ));
        }
        plan.push((key.clone(), *kind, shape.clone()));
    }
    plan.extend(passthrough.iter().map(|k| {
        let t = &file.tensors[*k];
        ((*k).clone(), t.kind, t.shape.clone())
    }));
    Ok(plan)
}

/// The blocks to convert, each with what converting it gives. As in [`super::convert`],
/// a block found by itself whose data does not read as `from` (a mask buffer that is
/// not causal) is left as it is; a block named by `opts.prefix` must read.
fn plan_blocks(
    file: &CheckpointFile,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
) -> Result<Vec<(BlockKeys, Vec<Planned>)>> {
    let source = file.name();
    let stand_ins = stand_ins(file)?;
    let (prefixes, named) = match &opts.prefix {
        Some(p) => (vec![normalise_prefix(p)], true),
        None => (candidate_prefixes(&stand_ins, from, false), false),
    };
    let mut out = Vec::new();
    for prefix in prefixes {
        let (_, keys) = extract_with(&stand_ins, &prefix, from, source, false)?;
        let block = BlockKeys { prefix, keys };
        let tensors = load_block(file, &block)?;
        if !named && extract(&tensors, &block.prefix, from, source).is_err() {
            continue;
        }
        let planned = convert_loaded(&tensors, &block.prefix, from, to, opts, source)?
            .iter()
            .map(|(k, t)| (k.clone(), t.kind(), t.size()))
            .collect();
        out.push((block, planned));
    }
    if out.is_empty() {
        return Err(none_found(source, from, &detect_with(&stand_ins, false)));
    }
    Ok(out)
}

/// One block read from `file` and converted, under full keys.
fn convert_block(
    file: &CheckpointFile,
    block: &BlockKeys,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
) -> Result<Vec<(String, Tensor)>> {
    let tensors = load_block(file, block)?;
    convert_loaded(&tensors, &block.prefix, from, to, opts, file.name())
}

/// The block under `prefix` of `tensors` (which hold it and nothing else) converted.
fn convert_loaded(
    tensors: &BTreeMap<String, Tensor>,
    prefix: &str,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
    source: &str,
) -> Result<Vec<(String, Tensor)>> {
    let (attn, _) = extract(tensors, prefix, from, source)?;
    let out = emit(&attn, to, opts).map_err(|e| at_prefix(e, prefix, source))?;
    Ok(out
        .into_iter()
        .map(|(k, t)| (format!("{prefix}{k}"), t))
        .collect())
}

/// The block's tensors, read and made contiguous (after checking the memory that
/// takes): a conversion computes with every element.
fn load_block(file: &CheckpointFile, block: &BlockKeys) -> Result<BTreeMap<String, Tensor>> {
    block
        .keys
        .iter()
        .map(|k| {
            Ok((
                k.clone(),
                contiguous_checked(&load(file, k)?, file.name(), k)?,
            ))
        })
        .collect()
}

/// The tensor under `key`, which the header listed.
fn load(file: &CheckpointFile, key: &str) -> Result<Tensor> {
    file.load(key).unwrap_or_else(|| {
        Err(Error::malformed(
            file.name(),
            format!("{key}: listed by the header but not found"),
        ))
    })
}
