//! `voxgate stream`: streams a WAV or raw file, or stdin, to a gateway at real time — or, with
//! `--fast`, as fast as the gateway acknowledges — and shows the transcripts as they come
//! ([`super::display`]); `--srt`/`--vtt` also write the finals as subtitles. Every failure ends
//! with a message on stderr and an exit code saying what failed ([`super::exit`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::audio::{AudioFormat, Encoding};

use super::display::Display;
use super::exit::{Failure, EXIT_CODES_HELP};
use super::input::{self, Input};
use super::subtitles::{self, Cue};

/// `voxgate stream` arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXIT_CODES_HELP)]
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
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub window_ms: u64,
    /// Send audio as base64 JSON `audio` messages instead of binary frames.
    #[arg(long)]
    pub base64: bool,
    /// BCP-47 language code.
    #[arg(long, default_value = "en-US")]
    pub language: String,
    /// The recogniser's model (`GET /v1/offer` lists the server's); empty: its default.
    #[arg(long, default_value = "")]
    pub model: String,
    /// Encoding of headerless (non-WAV) audio.
    #[arg(long, default_value = "LINEAR16")]
    pub encoding: String,
    /// Sample rate of headerless (non-WAV) audio.
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
    /// Length of each audio message, in ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frame_ms: u64,
    /// Do not ask for interim results.
    #[arg(long)]
    pub finals_only: bool,
    /// Print every server message as one JSON line on stdout, instead of the transcript.
    #[arg(long)]
    pub json: bool,
    /// Also write the finals as SRT subtitles to this file (`-`: stdout, instead of the
    /// transcript lines).
    #[arg(long, value_name = "FILE")]
    pub srt: Option<PathBuf>,
    /// Also write the finals as WebVTT subtitles to this file (`-`: stdout, instead of the
    /// transcript lines).
    #[arg(long, value_name = "FILE")]
    pub vtt: Option<PathBuf>,
    /// The audio: a WAV file (16-bit PCM or μ-law, mono), raw audio (see --encoding/--rate), or
    /// `-` (the default) for stdin, WAV or raw: `arecord -f S16_LE -r 16000 -c 1 -t wav |`,
    /// `sox in.mp3 -t raw -r 16000 -e signed -b 16 -c 1 - |`,
    /// `ffmpeg -i in.mp4 -f s16le -ar 16000 -ac 1 - |`.
    pub file: Option<PathBuf>,
}

/// `voxgate stream`, with its exit code.
pub fn main(args: StreamArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Streams the input; the subtitles are written whatever the outcome (what arrived is kept).
pub fn run(args: StreamArgs) -> Result<(), Failure> {
    let encoding = Encoding::parse(&args.encoding)
        .ok_or_else(|| Failure::Usage(format!("--encoding {}: unknown encoding", args.encoding)))?;
    let raw_format = AudioFormat {
        encoding,
        sample_rate_hz: args.rate,
    };
    let subtitle_files = [
        (args.srt.clone(), subtitles::Format::Srt),
        (args.vtt.clone(), subtitles::Format::Vtt),
    ];
    let to_stdout = |path: &Option<PathBuf>| path.as_deref() == Some(Path::new("-"));
    if to_stdout(&args.srt) && to_stdout(&args.vtt)
        || args.json && subtitle_files.iter().any(|(p, _)| to_stdout(p))
    {
        return Err(Failure::Usage(
            "only one of --json, --srt -, --vtt - can use stdout".into(),
        ));
    }
    let finals_on_stdout = !subtitle_files.iter().any(|(p, _)| to_stdout(p));
    let input = input::open(args.file.as_deref(), raw_format, args.frame_ms)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Session(format!("cannot start a runtime: {e}")))?;
    let display = Arc::new(Mutex::new(Display::new(args.json, finals_on_stdout)));
    let (cues, outcome) = runtime.block_on(stream(&args, input, display.clone()));
    display
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .finish();
    for (path, format) in subtitle_files {
        let Some(path) = path else { continue };
        let text = subtitles::render(&cues, format);
        let written = if path == Path::new("-") {
            print!("{text}");
            Ok(())
        } else {
            std::fs::write(&path, text)
        };
        if let Err(e) = written {
            outcome.clone()?;
            return Err(Failure::Output(format!("{}: {e}", path.display())));
        }
    }
    outcome
}

/// What the reader tells the sender.
enum Event {
    Acked(u64),
    Finished,
}

/// Runs one session; the finals received, and how it ended.
async fn stream(
    args: &StreamArgs,
    mut input: Input,
    display: Arc<Mutex<Display>>,
) -> (Vec<Cue>, Result<(), Failure>) {
    let ws = match connect(args).await {
        Ok(ws) => ws,
        Err(failure) => return (Vec::new(), Err(failure)),
    };
    let (mut sink, mut source) = ws.split();
    let mut start = json!({
        "type": "start",
        "encoding": input.format.encoding.as_str(),
        "sample_rate_hz": input.format.sample_rate_hz,
        "language_code": args.language,
        "interim_results": !args.finals_only,
    });
    if !args.model.is_empty() {
        start["model"] = json!(args.model);
    }
    if let Err(e) = sink.send(Message::Text(start.to_string().into())).await {
        return (Vec::new(), Err(Failure::Session(format!("send: {e}"))));
    }

    // The reader shows what the server says and tells the sender about acks and the end.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let reader_display = display.clone();
    let reader = tokio::spawn(async move {
        let mut cues = Vec::new();
        let outcome = read(&mut source, &reader_display, &events_tx, &mut cues).await;
        (cues, outcome)
    });

    let format = input.format;
    let mut ticker = tokio::time::interval(Duration::from_millis(args.frame_ms));
    let (mut acked_ms, mut sent_bytes, mut read_error) = (0, 0u64, None);
    'send: for i in 0.. {
        let chunk = match input.chunks.recv().await {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                read_error = Some(Failure::Input(e));
                break;
            }
        };
        if args.fast {
            while format.bytes_to_ms(sent_bytes) >= acked_ms + args.window_ms {
                match events.recv().await {
                    Some(Event::Acked(ms)) => acked_ms = acked_ms.max(ms),
                    Some(Event::Finished) | None => break 'send,
                }
            }
        } else {
            ticker.tick().await;
        }
        let message = if args.base64 {
            let content = base64::engine::general_purpose::STANDARD.encode(&chunk);
            let m = json!({"type":"audio","content":content,"audio_id":i.to_string()});
            Message::Text(m.to_string().into())
        } else {
            Message::Binary(chunk.clone().into())
        };
        if sink.send(message).await.is_err() {
            break; // the reader reports why
        }
        sent_bytes += chunk.len() as u64;
        display
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .progress(format.bytes_to_ms(sent_bytes), input.total_ms);
    }
    let _ = sink
        .send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await;
    let (cues, outcome) = match reader.await {
        Ok(done) => done,
        Err(e) => (
            Vec::new(),
            Err(Failure::Session(format!("reader failed: {e}"))),
        ),
    };
    // A broken pipe matters less than what the server said about the session.
    let outcome = outcome.and(read_error.map_or(Ok(()), Err));
    if sent_bytes == 0 && outcome.is_ok() {
        return (
            cues,
            Err(Failure::Input(format!("{}: no audio", input.name))),
        );
    }
    (cues, outcome)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket with the credential, if any.
async fn connect(args: &StreamArgs) -> Result<Socket, Failure> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Error;
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| Failure::Usage(format!("--url {}: {e}", args.url)))?;
    if let Some(key) = &args.api_key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| Failure::Usage("--api-key: not a valid header value".into()))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(response)) => {
            // The body is the server's JSON refusal: its message says why.
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let reason = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            Err(Failure::Refused(format!(
                "{} refused the connection: {} {reason}",
                args.url,
                response.status()
            )))
        }
        Err(e) => Err(Failure::Unreachable(format!(
            "cannot connect to {}: {e}",
            args.url
        ))),
    }
}

/// Reads the server's messages until the session ends; the finals go into `cues`.
async fn read(
    source: &mut futures_util::stream::SplitStream<Socket>,
    display: &Mutex<Display>,
    events: &tokio::sync::mpsc::UnboundedSender<Event>,
    cues: &mut Vec<Cue>,
) -> Result<(), Failure> {
    while let Some(message) = source.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| Failure::Session(format!("server sent invalid JSON: {e}")))?;
                display
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .message(&text, &v);
                match v["type"].as_str().unwrap_or("") {
                    "transcript" if v["is_final"] == true => {
                        let text = v["transcript"].as_str().unwrap_or("");
                        if !text.is_empty() {
                            cues.push(Cue {
                                start_ms: v["start_ms"].as_u64().unwrap_or(0),
                                end_ms: v["end_ms"].as_u64().unwrap_or(0),
                                text: text.to_string(),
                            });
                        }
                    }
                    "ack" => {
                        if let Some(ms) = v["audio_ms"].as_u64() {
                            let _ = events.send(Event::Acked(ms));
                        }
                    }
                    "closed" => {
                        let _ = events.send(Event::Finished);
                    }
                    "error" => {
                        return Err(Failure::Session(format!(
                            "server error {}: {}",
                            v["code"].as_str().unwrap_or("?"),
                            v["message"].as_str().unwrap_or("")
                        )))
                    }
                    _ => {}
                }
            }
            Ok(Message::Close(frame)) => {
                return match frame {
                    Some(f) if u16::from(f.code) != 1000 => Err(Failure::Session(format!(
                        "closed by the server: {} {}",
                        u16::from(f.code),
                        f.reason
                    ))),
                    _ => Ok(()),
                };
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::Session(format!("connection failed: {e}"))),
        }
    }
    Err(Failure::Session(
        "the connection closed without a close frame".into(),
    ))
}
