//! One loaded Moonshine tiny model (encoder + merged decoder ONNX Runtime sessions and the token
//! table) and its greedy decoder: 16 kHz samples of one speech segment in, text out.
//!
//! The model is not a streaming one: each call decodes a whole segment. The encoder runs once;
//! the decoder then runs once per token. Step 0 feeds the start token without cache
//! (`use_cache_branch` false; the past tensors it requires are placeholders it ignores) and
//! returns the self-attention cache and the cross-attention (encoder) cache; every later step feeds
//! only the previous token with the previous self-attention cache and the step-0 cross-attention
//! cache (later steps return empty placeholders for it). The next token is the argmax of the last
//! logits row; decoding stops at the end token or at a cap proportional to the audio's length
//! (hitting it means the model is repeating itself).
//!
//! Sessions run on the calling thread only (one intra-op and one inter-op thread, no spinning):
//! parallelism comes from the scheduler's workers, each owning one model.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::runtime::{environment, SETUP_COMMAND};
use super::tokenizer::{Tokenizer, END_TOKEN, START_TOKEN};

/// The model's sample rate.
pub const SAMPLE_RATE_HZ: usize = 16_000;
/// Shorter input fails inside the encoder's first convolution.
pub const MIN_SAMPLES: usize = 895;
/// Decoder layers (each with a self-attention and a cross-attention cache).
const LAYERS: usize = 6;
/// Attention heads and head width of the caches: `[1, HEADS, length, HEAD_DIM]`.
const HEADS: usize = 8;
const HEAD_DIM: usize = 36;
/// Token cap: this many tokens per second of audio (upstream's default), plus a little slack
/// for very short segments.
const MAX_TOKENS_PER_SECOND: f64 = 6.5;
const TOKEN_SLACK: usize = 5;

/// The model files in a model directory.
const ENCODER_FILE: &str = "encoder_model.ort";
const DECODER_FILE: &str = "decoder_model_merged.ort";
const TOKENIZER_FILE: &str = "tokenizer.bin";

/// Where one model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The directory of the model files.
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub onnxruntime_library: PathBuf,
}

impl ModelFiles {
    /// Checks that every file exists, naming the first missing one and the command that
    /// installs it.
    pub fn check(&self) -> Result<(), String> {
        for file in [ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE] {
            let path = self.model_dir.join(file);
            if !path.is_file() {
                return Err(format!(
                    "[local] moonshine_dir: {} not found (a file of the Moonshine model); install \
                     the model with {SETUP_COMMAND}, or point [local] moonshine_dir at a directory \
                     holding {ENCODER_FILE}, {DECODER_FILE} and {TOKENIZER_FILE}",
                    path.display()
                ));
            }
        }
        if !self.onnxruntime_library.is_file() {
            // The same message `environment` gives, before anything is loaded.
            return environment(&self.onnxruntime_library).map(|_| ());
        }
        Ok(())
    }
}

/// What decoding one segment gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The text, cased and punctuated as the model writes it.
    pub text: String,
    /// Tokens generated (the end token excluded).
    pub tokens: usize,
    /// Decoding stopped at the token cap, not at the end token (likely a repetition loop).
    pub hit_token_cap: bool,
}

/// A loaded model. See the module doc.
pub struct MoonshineModel {
    encoder: Session,
    decoder: Session,
    tokenizer: Tokenizer,
    /// Input names of the decoder's caches, per layer: self-attention key/value, then
    /// cross-attention key/value; and the matching output names.
    past_names: Vec<[String; 4]>,
    present_names: Vec<[String; 4]>,
}

impl std::fmt::Debug for MoonshineModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoonshineModel")
            .field("tokens", &self.tokenizer.len())
            .finish_non_exhaustive()
    }
}

/// An ORT error as text, with what was being done.
fn ort_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("Moonshine {what}: {e}")
}

fn load_session(env: &ort::environment::Environment, path: &Path) -> Result<Session, String> {
    let fail = |e: String| format!("cannot load {}: {e}", path.display());
    Session::builder(env)
        .map_err(|e| fail(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| fail(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_op_spinning(false)
        .map_err(|e| fail(e.to_string()))?
        .with_inter_op_spinning(false)
        .map_err(|e| fail(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| fail(e.to_string()))
}

impl MoonshineModel {
    /// Loads the model of `files` (checking them first).
    pub fn load(files: &ModelFiles) -> Result<MoonshineModel, String> {
        files.check()?;
        let env = environment(&files.onnxruntime_library)?;
        let tokenizer_path = files.model_dir.join(TOKENIZER_FILE);
        let table = std::fs::read(&tokenizer_path)
            .map_err(|e| format!("cannot read {}: {e}", tokenizer_path.display()))?;
        let tokenizer = Tokenizer::from_bytes(&table)
            .map_err(|e| format!("{}: {e}", tokenizer_path.display()))?;
        let encoder = load_session(&env, &files.model_dir.join(ENCODER_FILE))?;
        let decoder = load_session(&env, &files.model_dir.join(DECODER_FILE))?;
        let names = |prefix: &str| -> Vec<[String; 4]> {
            (0..LAYERS)
                .map(|i| {
                    [
                        format!("{prefix}.{i}.decoder.key"),
                        format!("{prefix}.{i}.decoder.value"),
                        format!("{prefix}.{i}.encoder.key"),
                        format!("{prefix}.{i}.encoder.value"),
                    ]
                })
                .collect()
        };
        Ok(MoonshineModel {
            encoder,
            decoder,
            tokenizer,
            past_names: names("past_key_values"),
            present_names: names("present"),
        })
    }

    /// The most tokens decoded for `samples` samples.
    pub fn token_cap(samples: usize) -> usize {
        let seconds = samples as f64 / SAMPLE_RATE_HZ as f64;
        (seconds * MAX_TOKENS_PER_SECOND).ceil() as usize + TOKEN_SLACK
    }

    /// Decodes one segment of 16 kHz samples in [−1, 1]. Shorter than [`MIN_SAMPLES`]: no text.
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Decoded, String> {
        if samples.len() < MIN_SAMPLES {
            return Ok(Decoded {
                text: String::new(),
                tokens: 0,
                hit_token_cap: false,
            });
        }
        let n = samples.len();
        let audio =
            Tensor::from_array(([1usize, n], samples.to_vec())).map_err(ort_error("input"))?;
        let mask = Tensor::from_array(([1usize, n], vec![1i64; n])).map_err(ort_error("input"))?;
        let hidden: DynValue = {
            let mut out = self
                .encoder
                .run(ort::inputs! {
                    "input_values" => &audio,
                    "attention_mask" => &mask,
                })
                .map_err(ort_error("encoder"))?;
            out.remove("last_hidden_state")
                .ok_or_else(|| "Moonshine encoder: no last_hidden_state output".to_string())?
        };
        // Step 0's cache inputs are placeholders the no-cache branch ignores.
        let placeholder = || {
            Tensor::from_array(([1usize, HEADS, 1, HEAD_DIM], vec![0f32; HEADS * HEAD_DIM]))
                .map(|t| t.into_dyn())
                .map_err(ort_error("input"))
        };
        let mut self_cache: Vec<[DynValue; 2]> = Vec::with_capacity(LAYERS);
        let mut cross_cache: Vec<[DynValue; 2]> = Vec::with_capacity(LAYERS);
        for _ in 0..LAYERS {
            self_cache.push([placeholder()?, placeholder()?]);
            cross_cache.push([placeholder()?, placeholder()?]);
        }
        let cap = MoonshineModel::token_cap(n);
        let mut tokens: Vec<i64> = Vec::new();
        let mut previous = START_TOKEN;
        let mut hit_token_cap = true;
        for step in 0..cap {
            let ids =
                Tensor::from_array(([1usize, 1], vec![previous])).map_err(ort_error("input"))?;
            let use_cache =
                Tensor::from_array(([1usize], vec![step > 0])).map_err(ort_error("input"))?;
            let mut inputs: Vec<(&str, SessionInputValue<'_>)> = vec![
                ("input_ids", (&ids).into()),
                ("encoder_hidden_states", (&hidden).into()),
                ("encoder_attention_mask", (&mask).into()),
                ("use_cache_branch", (&use_cache).into()),
            ];
            for (layer, names) in self.past_names.iter().enumerate() {
                inputs.push((names[0].as_str(), (&self_cache[layer][0]).into()));
                inputs.push((names[1].as_str(), (&self_cache[layer][1]).into()));
                inputs.push((names[2].as_str(), (&cross_cache[layer][0]).into()));
                inputs.push((names[3].as_str(), (&cross_cache[layer][1]).into()));
            }
            let mut out = self.decoder.run(inputs).map_err(ort_error("decoder"))?;
            let next = {
                let logits = out
                    .get("logits")
                    .ok_or_else(|| "Moonshine decoder: no logits output".to_string())?;
                let (_, values) = logits
                    .try_extract_tensor::<f32>()
                    .map_err(ort_error("decoder logits"))?;
                let width = self.tokenizer.len();
                if values.len() < width {
                    return Err(format!(
                        "Moonshine decoder: {} logits, fewer than the {width} tokens",
                        values.len()
                    ));
                }
                argmax(&values[values.len() - width..])
            };
            let mut take = |name: &str| {
                out.remove(name)
                    .ok_or_else(|| format!("Moonshine decoder: no {name} output"))
            };
            for (layer, names) in self.present_names.iter().enumerate() {
                self_cache[layer] = [take(&names[0])?, take(&names[1])?];
                if step == 0 {
                    cross_cache[layer] = [take(&names[2])?, take(&names[3])?];
                }
            }
            if next == END_TOKEN {
                hit_token_cap = false;
                break;
            }
            tokens.push(next);
            previous = next;
        }
        Ok(Decoded {
            text: self.tokenizer.decode(&tokens),
            tokens: tokens.len(),
            hit_token_cap,
        })
    }
}

/// The index of the largest value (the first of equals); 0 for an empty slice.
fn argmax(values: &[f32]) -> i64 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as i64
}

#[cfg(test)]
mod tests;
