//! `voxgate stream`: streams a WAV or raw file, or stdin, to a gateway at real time — or, with
//! `--fast`, as fast as the gateway acknowledges — and shows the transcripts as they come
//! ([`super::display`]); `--srt`/`--vtt` also write the finals as subtitles. When the connection
//! drops, or a draining server tells it to move (`reconnect`), the session is resumed on a new one
//! through the same URL ([`super::resume`]: the audio after the last final is sent again). Every failure ends with a message on stderr and an exit code saying what failed
//! ([`super::exit`]).

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
use super::resume::ResumeBook;
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

/// How many connections after the first one session may use (resumes after drops).
const MAX_RESUMES: u32 = 10;
/// Connection attempts for one resume, the pause doubling from [`RESUME_BACKOFF`] (0.5 … 8 s).
const RESUME_ATTEMPTS: u32 = 5;
const RESUME_BACKOFF: Duration = Duration::from_millis(500);
/// Audio kept for a resume, at most (the server's default resume window; audio this long without
/// a final is rare, and without all of it a resume would lose words).
const RESUME_KEEP_MS: u64 = 120_000;
/// Nothing at all from the server (its pings come every 10 s) for this long: the connection is
/// dead even though no error says so (a network that vanished).
const READ_SILENCE: Duration = Duration::from_secs(30);
/// After a failed send, how long the reader may take to report how the connection ended.
const READER_GRACE: Duration = Duration::from_secs(2);

/// What the reader tells the sender.
enum Event {
    Acked(u64),
    /// The session is over on this connection (`closed`, an error, or the connection is gone).
    Ended,
}

/// How a connection ended, as the reader saw it.
enum Ended {
    /// The session failed for good (a server error, a refused resume).
    Failed(Failure),
    /// The connection was lost (or the server is draining): the session can be resumed.
    Lost(Failure),
    /// The server asked the session to move (`reconnect`, a drain by hand-off): resumed at once.
    Moved(Failure),
}

/// How sending on one connection ended.
enum Sent {
    /// The input is exhausted (or failed to read): time for `stop`.
    AllAudio,
    /// The reader said the session ended.
    Ended,
    /// A send failed: the connection is broken.
    Broken,
}

/// The sender's progress across connections.
struct Sender {
    ticker: tokio::time::Interval,
    /// Audio read from the input (and sent, or kept to send after a resume), in bytes.
    sent_bytes: u64,
    acked_ms: u64,
    frame: u64,
    read_error: Option<Failure>,
}

/// Runs one session, resuming it on a new connection when the connection drops; the finals
/// received, and how it ended.
async fn stream(
    args: &StreamArgs,
    mut input: Input,
    display: Arc<Mutex<Display>>,
) -> (Vec<Cue>, Result<(), Failure>) {
    let format = input.format;
    let book = Arc::new(Mutex::new(ResumeBook::new(format, RESUME_KEEP_MS)));
    let cues = Arc::new(Mutex::new(Vec::new()));
    let mut sender = Sender {
        ticker: tokio::time::interval(Duration::from_millis(args.frame_ms)),
        sent_bytes: 0,
        acked_ms: 0,
        frame: 0,
        read_error: None,
    };
    let mut resume: Option<Value> = None;
    let mut resumes = 0;
    // Before the first attempt of a resume: none after `reconnect` (the server is gone, another
    // is ready), a pause after a loss (the network or the server may be back in a moment).
    let mut first_pause = RESUME_BACKOFF;
    let outcome = loop {
        let ws = match &resume {
            None => connect(args).await,
            Some(_) => reconnect(args, &display, first_pause)
                .await
                .map_err(|failure| {
                    Failure::Session(format!(
                        "the session could not be resumed: {}",
                        failure.message()
                    ))
                }),
        };
        let ws = match ws {
            Ok(ws) => ws,
            Err(failure) => break Err(failure),
        };
        let (mut sink, mut source) = ws.split();
        let resuming = resume.is_some();
        let start = resume.take().unwrap_or_else(|| start_message(args, format));
        if let Err(e) = sink.send(Message::Text(start.to_string().into())).await {
            break Err(Failure::Session(format!("send: {e}")));
        }

        // The reader shows what the server says and tells the sender about acks and the end.
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let (reader_display, reader_cues, reader_book) =
            (display.clone(), cues.clone(), book.clone());
        let mut reader = tokio::spawn(async move {
            let outcome = read(
                &mut source,
                &reader_display,
                &events_tx,
                &reader_cues,
                &reader_book,
            )
            .await;
            let _ = events_tx.send(Event::Ended);
            outcome
        });

        let mut sent = Sent::AllAudio;
        if resuming {
            // The audio after the last final received, again, at once: the server paces it.
            let backlog = lock(&book).backlog();
            let frame = format.ms_to_bytes(args.frame_ms).max(1) as usize;
            for chunk in backlog.chunks(frame) {
                if sink
                    .send(Message::Binary(chunk.to_vec().into()))
                    .await
                    .is_err()
                {
                    sent = Sent::Broken;
                    break;
                }
            }
        }
        if !matches!(sent, Sent::Broken) {
            sent = send_audio(
                args,
                &mut sink,
                &mut input,
                &mut events,
                &book,
                &display,
                &mut sender,
            )
            .await;
        }
        let outcome = match sent {
            Sent::AllAudio => {
                let _ = sink
                    .send(Message::Text(json!({"type":"stop"}).to_string().into()))
                    .await;
                (&mut reader).await
            }
            Sent::Ended => (&mut reader).await,
            Sent::Broken => match tokio::time::timeout(READER_GRACE, &mut reader).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    reader.abort();
                    Ok(Err(Ended::Lost(Failure::Session(
                        "the connection broke while sending".into(),
                    ))))
                }
            },
        };
        match outcome {
            Ok(Ok(())) => break Ok(()),
            Ok(Err(Ended::Failed(failure))) => break Err(failure),
            Err(e) => break Err(Failure::Session(format!("reader failed: {e}"))),
            Ok(Err(ended @ (Ended::Lost(_) | Ended::Moved(_)))) => {
                let (failure, pause) = match ended {
                    Ended::Moved(failure) => (failure, Duration::ZERO),
                    Ended::Lost(failure) | Ended::Failed(failure) => (failure, RESUME_BACKOFF),
                };
                first_pause = pause;
                let start = lock(&book).resume_start();
                match start {
                    Some(start) if resumes < MAX_RESUMES => {
                        resumes += 1;
                        let from_ms = lock(&book).final_ms();
                        lock(&display).notice(&format!(
                            "{}; resuming the session from {:.1} s",
                            failure.message(),
                            from_ms as f64 / 1000.0
                        ));
                        resume = Some(start);
                    }
                    _ => break Err(failure),
                }
            }
        }
    };
    let cues = std::mem::take(&mut *lock(&cues));
    // A broken pipe matters less than what the server said about the session.
    let outcome = outcome.and(sender.read_error.map_or(Ok(()), Err));
    if sender.sent_bytes == 0 && outcome.is_ok() {
        return (
            cues,
            Err(Failure::Input(format!("{}: no audio", input.name))),
        );
    }
    (cues, outcome)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The configuring `start` of a new session.
fn start_message(args: &StreamArgs, format: AudioFormat) -> Value {
    let mut start = json!({
        "type": "start",
        "encoding": format.encoding.as_str(),
        "sample_rate_hz": format.sample_rate_hz,
        "language_code": args.language,
        "interim_results": !args.finals_only,
    });
    if !args.model.is_empty() {
        start["model"] = json!(args.model);
    }
    start
}

/// Connects again for a resume, a few times with a growing pause (the network may be back only
/// in a moment; the server may be restarting), the first after `first_pause`.
async fn reconnect(
    args: &StreamArgs,
    display: &Mutex<Display>,
    first_pause: Duration,
) -> Result<Socket, Failure> {
    let mut pause = first_pause;
    let mut last = None;
    for _ in 0..RESUME_ATTEMPTS {
        tokio::time::sleep(pause).await;
        match connect(args).await {
            Ok(ws) => return Ok(ws),
            Err(failure) => {
                lock(display).notice(&format!("resume: {}", failure.message()));
                last = Some(failure);
            }
        }
        pause = if pause.is_zero() {
            RESUME_BACKOFF
        } else {
            pause * 2
        };
    }
    Err(last.unwrap_or_else(|| Failure::Unreachable("cannot reconnect".into())))
}

/// An event from the reader while sending: `Some` when sending must end.
fn on_event(event: Option<Event>, acked_ms: &mut u64) -> Option<Sent> {
    match event {
        Some(Event::Acked(ms)) => {
            *acked_ms = (*acked_ms).max(ms);
            None
        }
        Some(Event::Ended) | None => Some(Sent::Ended),
    }
}

/// Sends the input on one connection, at real time or by acks, each chunk kept for a resume
/// first; until the input ends, the reader says the session ended, or a send fails.
async fn send_audio(
    args: &StreamArgs,
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    input: &mut Input,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    book: &Mutex<ResumeBook>,
    display: &Mutex<Display>,
    sender: &mut Sender,
) -> Sent {
    let format = input.format;
    loop {
        let chunk = tokio::select! {
            chunk = input.chunks.recv() => chunk,
            event = events.recv() => match on_event(event, &mut sender.acked_ms) {
                Some(end) => return end,
                None => continue,
            },
        };
        let chunk = match chunk {
            None => return Sent::AllAudio,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                sender.read_error = Some(Failure::Input(e));
                return Sent::AllAudio;
            }
        };
        let before = format.bytes_to_ms(sender.sent_bytes);
        // Kept (and counted) before it is sent: if this connection drops now, it is in the
        // audio sent again after the resume.
        lock(book).sent(&chunk);
        sender.sent_bytes += chunk.len() as u64;
        if args.fast {
            while before >= sender.acked_ms + args.window_ms {
                if let Some(end) = on_event(events.recv().await, &mut sender.acked_ms) {
                    return end;
                }
            }
        } else {
            loop {
                tokio::select! {
                    _ = sender.ticker.tick() => break,
                    event = events.recv() => {
                        if let Some(end) = on_event(event, &mut sender.acked_ms) {
                            return end;
                        }
                    }
                }
            }
        }
        let message = if args.base64 {
            let content = base64::engine::general_purpose::STANDARD.encode(&chunk);
            let audio_id = sender.frame.to_string();
            let m = json!({"type":"audio","content":content,"audio_id":audio_id});
            Message::Text(m.to_string().into())
        } else {
            Message::Binary(chunk.into())
        };
        sender.frame += 1;
        if sink.send(message).await.is_err() {
            return Sent::Broken; // the reader reports why
        }
        lock(display).progress(format.bytes_to_ms(sender.sent_bytes), input.total_ms);
    }
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

/// Reads the server's messages until the session ends on this connection; the finals go into
/// `cues`, tokens and finals into `book`.
async fn read(
    source: &mut futures_util::stream::SplitStream<Socket>,
    display: &Mutex<Display>,
    events: &tokio::sync::mpsc::UnboundedSender<Event>,
    cues: &Mutex<Vec<Cue>>,
    book: &Mutex<ResumeBook>,
) -> Result<(), Ended> {
    let lost = |what: String| Err(Ended::Lost(Failure::Session(what)));
    loop {
        let message = match tokio::time::timeout(READ_SILENCE, source.next()).await {
            Err(_) => {
                let silence = READ_SILENCE.as_secs();
                return lost(format!("nothing from the server for {silence} s"));
            }
            Ok(None) => return lost("the connection closed without a close frame".into()),
            Ok(Some(message)) => message,
        };
        match message {
            Ok(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| {
                    Ended::Failed(Failure::Session(format!("server sent invalid JSON: {e}")))
                })?;
                lock(display).message(&text, &v);
                lock(book).received(&v);
                match v["type"].as_str().unwrap_or("") {
                    "transcript" if v["is_final"] == true => {
                        let text = v["transcript"].as_str().unwrap_or("");
                        if !text.is_empty() {
                            lock(cues).push(Cue {
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
                        let _ = events.send(Event::Ended);
                    }
                    // A drain by hand-off: the token came with it (the book has it), resume now.
                    "reconnect" => {
                        return Err(Ended::Moved(Failure::Session(
                            "the server moved the session".into(),
                        )));
                    }
                    "error" => {
                        let code = v["code"].as_str().unwrap_or("?");
                        let failure = Failure::Session(format!(
                            "server error {code}: {}",
                            v["message"].as_str().unwrap_or("")
                        ));
                        // A draining server: the session goes on elsewhere.
                        return Err(if code == "shutting_down" {
                            Ended::Lost(failure)
                        } else {
                            Ended::Failed(failure)
                        });
                    }
                    _ => {}
                }
            }
            Ok(Message::Close(frame)) => {
                return match frame {
                    Some(f) if u16::from(f.code) != 1000 => Err(Ended::Failed(Failure::Session(
                        format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    ))),
                    _ => Ok(()),
                };
            }
            Ok(_) => {}
            Err(e) => return lost(format!("connection failed: {e}")),
        }
    }
}
