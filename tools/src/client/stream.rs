//! `voxgate stream`: a small command-line client. It reads a WAV (or raw) file, streams it to a
//! gateway at real time — or, with `--fast`, as fast as the gateway acknowledges — prints interim
//! results to stderr and final results to stdout, and exits non-zero on any error.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::audio::{AudioFormat, Encoding};

use super::wav::{parse_wav, AudioFile};

/// `voxgate stream` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct StreamArgs {
    /// The gateway's WebSocket URL (`wss://` verifies the server's certificate against the
    /// public web roots).
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/listen")]
    pub url: String,
    /// API key or session token, sent as `Authorization: Bearer …` (never printed).
    #[arg(long, env = "VOXGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Send as fast as the gateway acknowledges (keeping at most `--window-ms` unacknowledged)
    /// instead of at real time.
    #[arg(long)]
    pub fast: bool,
    /// Unacknowledged audio allowed in flight with `--fast`, in ms.
    #[arg(long, default_value_t = 3_000)]
    pub window_ms: u64,
    /// Send audio as base64 JSON `audio` messages instead of binary frames.
    #[arg(long)]
    pub base64: bool,
    /// BCP-47 language code.
    #[arg(long, default_value = "en-US")]
    pub language: String,
    /// Encoding of a headerless (non-WAV) file.
    #[arg(long, default_value = "LINEAR16")]
    pub encoding: String,
    /// Sample rate of a headerless (non-WAV) file.
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
    /// Length of each audio message, in ms.
    #[arg(long, default_value_t = 100)]
    pub frame_ms: u64,
    /// Do not print interim results.
    #[arg(long)]
    pub finals_only: bool,
    /// The audio file: a WAV (16-bit PCM or μ-law, mono) or raw audio (see --encoding/--rate).
    pub file: PathBuf,
}

/// Reads the file named in `args`, WAV or raw.
pub fn read_audio(args: &StreamArgs) -> Result<AudioFile, String> {
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    if bytes.starts_with(b"RIFF") {
        return parse_wav(&bytes).map_err(|e| format!("{}: {e}", args.file.display()));
    }
    let encoding = Encoding::parse(&args.encoding)
        .ok_or_else(|| format!("--encoding {}: unknown encoding", args.encoding))?;
    Ok(AudioFile {
        format: AudioFormat {
            encoding,
            sample_rate_hz: args.rate,
        },
        data: bytes,
    })
}

pub fn run(args: StreamArgs) -> Result<(), String> {
    let audio = read_audio(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(stream(args, audio))
}

/// What the server said that the sender must react to.
enum Event {
    Acked(u64),
    Finished,
}

async fn stream(args: StreamArgs, audio: AudioFile) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("--url {}: {e}", args.url))?;
    if let Some(key) = &args.api_key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| "--api-key: not a valid header value".to_string())?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).to_string())
                    .unwrap_or_default();
                format!(
                    "{} refused the connection: {} {body}",
                    args.url,
                    response.status()
                )
            }
            other => format!("cannot connect to {}: {other}", args.url),
        })?;
    let (mut sink, mut source) = ws.split();
    let start = json!({
        "type": "start",
        "encoding": audio.format.encoding.as_str(),
        "sample_rate_hz": audio.format.sample_rate_hz,
        "language_code": args.language,
        "interim_results": !args.finals_only,
    });
    sink.send(Message::Text(start.to_string().into()))
        .await
        .map_err(|e| format!("send: {e}"))?;

    // The reader prints results and tells the sender about acknowledgements and the end.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let finals_only = args.finals_only;
    let reader = tokio::spawn(async move {
        while let Some(msg) = source.next().await {
            match msg {
                Ok(Message::Text(text)) => {
                    let v: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("server sent invalid JSON: {e}"))?;
                    if let Some(event) = show(&v, finals_only)? {
                        let _ = events_tx.send(event);
                    }
                }
                Ok(Message::Close(frame)) => {
                    return match frame {
                        Some(f) if u16::from(f.code) != 1000 => Err(format!(
                            "closed by server: {} {}",
                            u16::from(f.code),
                            f.reason
                        )),
                        _ => Ok(()),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(format!("connection failed: {e}")),
            }
        }
        Err("connection closed without a close frame".to_string())
    });

    let frame_bytes = (audio.format.ms_to_bytes(args.frame_ms) as usize).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(args.frame_ms));
    let mut acked_ms = 0;
    let mut sent_bytes = 0u64;
    for (i, chunk) in audio.data.chunks(frame_bytes).enumerate() {
        if args.fast {
            while audio.format.bytes_to_ms(sent_bytes) >= acked_ms + args.window_ms {
                match events.recv().await {
                    Some(Event::Acked(ms)) => acked_ms = acked_ms.max(ms),
                    Some(Event::Finished) | None => break,
                }
            }
        } else {
            ticker.tick().await;
        }
        let msg = if args.base64 {
            let content = base64::engine::general_purpose::STANDARD.encode(chunk);
            let m = json!({"type":"audio","content":content,"audio_id":i.to_string()});
            Message::Text(m.to_string().into())
        } else {
            Message::Binary(chunk.to_vec().into())
        };
        if sink.send(msg).await.is_err() {
            break; // the reader reports why
        }
        sent_bytes += chunk.len() as u64;
    }
    let _ = sink
        .send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await;
    reader.await.map_err(|e| format!("reader failed: {e}"))?
}

/// Prints one server message; returns what the sender needs to know, or the error the server sent.
fn show(v: &Value, finals_only: bool) -> Result<Option<Event>, String> {
    match v["type"].as_str().unwrap_or("") {
        "transcript" => {
            let text = v["transcript"].as_str().unwrap_or("");
            let (start, end) = (v["start_ms"].as_u64(), v["end_ms"].as_u64());
            if v["is_final"] == true {
                println!(
                    "[{:>8.2}s – {:>8.2}s] {text}",
                    start.unwrap_or(0) as f64 / 1000.0,
                    end.unwrap_or(0) as f64 / 1000.0
                );
            } else if !finals_only {
                eprintln!("  … {text}");
            }
            Ok(None)
        }
        "ack" => Ok(v["audio_ms"].as_u64().map(Event::Acked)),
        "warning" => {
            eprintln!("warning: {} {}", v["code"], v["message"]);
            Ok(None)
        }
        "error" => Err(format!(
            "server error {}: {}",
            v["code"].as_str().unwrap_or("?"),
            v["message"].as_str().unwrap_or("")
        )),
        "closed" => {
            eprintln!(
                "closed: {:.1} s of audio, {} results, {} restarts",
                v["audio_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                v["results"],
                v["restarts"]
            );
            Ok(Some(Event::Finished))
        }
        _ => Ok(None),
    }
}
