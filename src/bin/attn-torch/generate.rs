//! `attn generate`: a decoder LM (SmolLM2-135M-Instruct by default) continues a prompt
//! or answers it as a chat, greedily or sampled, with transformers' tokens.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use tch_attention::generate::{generate, Decoding, GenerateOptions, Generation};
use tch_attention::models::llama::{ChatMessage, LlamaForCausalLM, LlamaTokenizer};

use tch_attention::memory::human_bytes;

use crate::llama_model::{LoadArgs, Loaded};
use crate::with_flag_names;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The prompt.
    prompt: String,
    /// Send the prompt as a user message through the model's chat template (with the
    /// assistant's turn opened), as apply_chat_template(add_generation_prompt=True).
    #[arg(long)]
    chat: bool,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: i64,
    /// Sample with this temperature (0: greedy). Any of --temperature, --top-k, --top-p,
    /// --seed turns sampling on; the others keep transformers' defaults (1.0, 50, 1.0).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f64>,
    /// Sample from the k most likely tokens only (0: all).
    #[arg(long, allow_negative_numbers = true)]
    top_k: Option<i64>,
    /// Sample from the most likely tokens whose probabilities sum past p.
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f64>,
    /// Seed of the sampler: the same seed gives transformers' tokens after
    /// torch.manual_seed(seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep generating after the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    #[command(flatten)]
    load: LoadArgs,
    /// Print {"prompt_ids", "ids", "text", "prefill_ms", "decode_ms_per_token"} on one
    /// line instead of streaming the text.
    #[arg(long)]
    json: bool,
}

const FLAGS: &[(&str, &str)] = &[
    ("temperature", "--temperature"),
    ("top_k", "--top-k"),
    ("top_p", "--top-p"),
    ("max_new_tokens", "--max-new-tokens"),
];

impl Args {
    fn decoding(&self) -> Decoding {
        Decoding::from_settings(self.temperature, self.top_k, self.top_p, self.seed)
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.load.check()?;
    // The options first: a bad one fails before the model (seconds) is read.
    check_options(&args)?;
    // The load's temporaries (dequantised tensors, reordered copies) go back to the
    // system as they are freed, so they do not stay in the peak beside the weights;
    // the steps then keep what they free (memory.rs).
    tch_attention::memory::return_freed_memory_above(64 << 10);
    let Loaded {
        vs: _vs,
        model,
        tokenizer,
        ..
    } = args
        .load
        .load(|tokenizer, source| refuse_chat_without_template(args.chat, tokenizer, source))?;
    tch_attention::memory::keep_freed_memory();
    let text = if args.chat {
        tokenizer.apply_chat_template(&[ChatMessage::user(&args.prompt)], true)?
    } else {
        args.prompt.clone()
    };
    let prompt_ids = tokenizer.encode(&text)?;
    check_cache(&model, prompt_ids.len(), args.max_new_tokens)?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        decoding: args.decoding(),
        eos_token_ids: if args.ignore_eos {
            vec![]
        } else {
            model.config.eos_token_ids.clone()
        },
        kv_cache: true,
    };
    let mut stream = Stream::new(&tokenizer, !args.json);
    let out = generate(&model, &prompt_ids, &options, |id| stream.push(id))
        .map_err(|e| with_flag_names(e, FLAGS))?;
    stream.finish();
    report(&args, &tokenizer, &prompt_ids, &out)?;
    Ok(ExitCode::SUCCESS)
}

/// `--json`'s one line on stdout, or the summary line on stderr.
fn report(
    args: &Args,
    tokenizer: &LlamaTokenizer,
    prompt_ids: &[i64],
    out: &Generation,
) -> Result<()> {
    let prefill_ms = out.prefill.as_secs_f64() * 1e3;
    let per_token_ms = out.decode_per_token().map(|d| d.as_secs_f64() * 1e3);
    if args.json {
        let json = serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": out.ids,
            "text": tokenizer.decode(&out.ids)?,
            "prefill_ms": prefill_ms,
            "decode_ms_per_token": per_token_ms,
        });
        println!("{json}");
    } else {
        let per_token = per_token_ms.map_or("-".into(), |ms| format!("{ms:.1} ms/token"));
        let eos = if out.stopped_at_eos {
            ", stopped at EOS"
        } else {
            ""
        };
        eprintln!(
            "[{} prompt tokens, {} generated{eos}; prefill {prefill_ms:.0} ms, decode {per_token}]",
            prompt_ids.len(),
            out.ids.len(),
        );
    }
    Ok(())
}

/// What `generate` checks of its options, checked before the model is read.
fn check_options(args: &Args) -> Result<()> {
    anyhow::ensure!(
        args.max_new_tokens >= 0,
        "--max-new-tokens: must be >= 0, got {}",
        args.max_new_tokens
    );
    if let Decoding::Sample { config, .. } = args.decoding() {
        config.validate().map_err(|e| with_flag_names(e, FLAGS))?;
    }
    Ok(())
}

/// `generate` makes its KV cache for the prompt and every new token at once: a count
/// that would not fit in memory (or in 64 bits) is refused here, naming the flag,
/// rather than reaching libtorch's allocator.
fn check_cache(model: &LlamaForCausalLM, prompt: usize, max_new_tokens: i64) -> Result<()> {
    let c = &model.config;
    let elt = model.model.embed_tokens.kind().elt_size_in_bytes() as u64;
    let positions = (prompt as u64).checked_add(max_new_tokens.max(1) as u64);
    let bytes = [c.num_hidden_layers, c.num_key_value_heads, c.head_dim]
        .iter()
        .try_fold(2 * elt, |n, &d| n.checked_mul(d.max(0) as u64))
        .zip(positions)
        .and_then(|(per_position, positions)| per_position.checked_mul(positions))
        .filter(|_| positions.is_some_and(|p| p <= i64::MAX as u64));
    let what =
        format!("--max-new-tokens: {max_new_tokens} new tokens after {prompt} of the prompt");
    let Some(bytes) = bytes else {
        anyhow::bail!("{what}: the KV cache's size overflows 64-bit integers");
    };
    if let Some(available) = tch_attention::memory::available_memory() {
        anyhow::ensure!(
            bytes <= available,
            "{what} need a KV cache of {}, more than the {} available",
            human_bytes(bytes),
            human_bytes(available)
        );
    }
    Ok(())
}

/// `--chat` on a base model (Gemma 3 270M's GGUF has no template): one line, before
/// the weights load.
pub fn refuse_chat_without_template(
    chat: bool,
    tokenizer: &LlamaTokenizer,
    source: &str,
) -> Result<()> {
    if chat && tokenizer.chat_template.is_none() {
        anyhow::bail!(
            "--chat: {source} has no chat template (no tokenizer.chat_template, \
             chat_template.jinja or tokenizer_config.json's chat_template: a base model); \
             prompt it with raw text, without --chat"
        );
    }
    Ok(())
}

/// Prints the text as tokens arrive. A token can end inside a UTF-8 character (byte
/// fallback), so the text is decoded whole each time and only a grown prefix printed.
struct Stream<'a> {
    tokenizer: &'a LlamaTokenizer,
    on: bool,
    ids: Vec<i64>,
    printed: usize,
}

impl<'a> Stream<'a> {
    fn new(tokenizer: &'a LlamaTokenizer, on: bool) -> Self {
        Self {
            tokenizer,
            on,
            ids: Vec::new(),
            printed: 0,
        }
    }

    fn push(&mut self, id: i64) {
        self.ids.push(id);
        if !self.on {
            return;
        }
        let Ok(text) = self.tokenizer.decode(&self.ids) else {
            return;
        };
        // Hold back a trailing replacement character: the rest of its bytes may follow.
        let stable = text.trim_end_matches('\u{fffd}');
        if stable.len() > self.printed && text.is_char_boundary(self.printed) {
            print!("{}", &stable[self.printed..]);
            let _ = std::io::stdout().flush();
            self.printed = stable.len();
        }
    }

    fn finish(&mut self) {
        if self.on {
            if let Ok(text) = self.tokenizer.decode(&self.ids) {
                if text.len() > self.printed && text.is_char_boundary(self.printed) {
                    print!("{}", &text[self.printed..]);
                }
            }
            println!();
        }
    }
}
