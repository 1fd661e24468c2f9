//! `attn embed`: sentence embeddings from the pretrained encoder, as sentence-transformers
//! computes them (mean pooling over tokens, L2-normalised).

use std::process::ExitCode;

use anyhow::Result;

use crate::model::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sentences, embedded together as one padded batch.
    #[arg(required = true)]
    sentences: Vec<String>,
    /// One JSON array of floats per sentence, one per line, in order.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (model, _) = args.model.load()?;
    let sentences: Vec<&str> = args.sentences.iter().map(String::as_str).collect();
    let embeddings = model.embed(&sentences)?; // (N, E), unit rows
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&embeddings)?;
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (s, row) in sentences.iter().zip(&rows) {
        let head: Vec<String> = row.iter().take(6).map(|v| format!("{v:+.4}")).collect();
        println!(
            "{s:?}\n  {} values, unit length: [{}, ...]",
            row.len(),
            head.join(", ")
        );
    }
    if rows.len() > 1 {
        // Rows are unit vectors, so the dot product is the cosine similarity.
        println!("cosine similarity:");
        for (i, a) in rows.iter().enumerate() {
            let sims: Vec<String> = rows
                .iter()
                .map(|b| format!("{:6.3}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()))
                .collect();
            println!("  [{i}] {}", sims.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
