//! `voxgate bench speech`: the local engine (`[recognizer] backend = "local"`) on real speech —
//! how many concurrent real-time sessions this machine carries, and how late their finals come.
//!
//! For each level of `--sessions` the bench starts a fresh `voxgate serve` with the engine asked
//! for, and opens that many sessions at once (staggered by a fraction of a second). Each session
//! streams recordings of read speech (16 kHz mono WAV; by default the LibriVox clips of Debian's
//! `pocketsphinx-testdata`), one after another with a pause between them, each session starting
//! at a different recording, in 100 ms binary frames paced at real time, then `stop`.
//!
//! **Final latency** is measured per recording: from the moment the bench sent the frame holding
//! the recording's end of speech (the end of its last 10 ms frame within 30 dB of its loudest) to
//! the arrival of the final that closes it (the last final ending at most 300 ms before that
//! point and before the next recording's speech). It includes the engine's wait for a pause
//! (`[local] end_silence_ms`), which is part of what a user waits. A recording whose closing final
//! never came counts as *missed*.
//!
//! A level is **carried** when every session was held (no `busy`, no failure, `closed` and Close
//! 1000), no final was missed, and the p99 final latency is at most `--max-p99-ms`. The server's
//! CPU over the level (from `/proc`) is reported as cores in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::audio::{AudioFormat, Encoding};

use super::measure::Percentiles;
use super::process;
use super::scenarios::Server;
use crate::client::wav::parse_wav;

/// Samples per second of the recordings.
const RATE: usize = 16_000;
/// Samples per 100 ms frame.
const FRAME_SAMPLES: usize = RATE / 10;
/// Samples per 10 ms energy frame.
const ENERGY_FRAME: usize = RATE / 100;
/// Speech is what is within this many dB of the recording's loudest 10 ms.
const SPEECH_RANGE_DB: f64 = 30.0;
/// A final closes a recording if it ends at most this long before its end of speech.
const CLOSING_SLACK_MS: u64 = 300;
/// How long a session may take to end after its `stop`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// `voxgate bench speech` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeechArgs {
    /// The `[local] engine` of the gateway the bench starts: moonshine or pocketsphinx.
    #[arg(long, default_value = "moonshine")]
    pub engine: String,
    /// Concurrent sessions of each level (comma-separated); each level runs on a fresh gateway.
    #[arg(long, default_value = "2,4,6,8,10,12", value_delimiter = ',')]
    pub sessions: Vec<usize>,
    /// Seconds of audio each session streams (whole recordings, at least one).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Ask for final results only (default: interim results on).
    #[arg(long)]
    pub finals_only: bool,
    /// A directory of 16 kHz mono LINEAR16 WAV recordings, streamed in name order.
    #[arg(long, default_value = "/usr/share/pocketsphinx/test/data/librivox")]
    pub recordings: PathBuf,
    /// Silence after each recording, ms (longer than `[local] end_silence_ms`).
    #[arg(long, default_value_t = 1_500)]
    pub pause_ms: u64,
    /// The p99 final latency a level may have to count as carried, ms.
    #[arg(long, default_value_t = 700.0)]
    pub max_p99_ms: f64,
    /// Stop after the first level that is not carried.
    #[arg(long)]
    pub stop_at_first_failure: bool,
    /// More environment for the gateway, KEY=VALUE (e.g. VOXGATE_LOCAL__WORKERS=2).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// `RUST_LOG` of the gateway (its stderr goes to a log file in --out).
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Where the gateways' logs go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

/// One recording: its samples and where its speech begins and ends (samples).
#[derive(Debug, Clone)]
struct Recording {
    samples: Vec<i16>,
    speech_start: usize,
    speech_end: usize,
}

/// Where speech is in `samples`: the first and one past the last 10 ms frame within
/// [`SPEECH_RANGE_DB`] of the loudest; `None` for silence.
fn speech_bounds(samples: &[i16]) -> Option<(usize, usize)> {
    let energy: Vec<f64> = samples
        .chunks(ENERGY_FRAME)
        .map(|frame| {
            let power = frame
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum::<f64>()
                / frame.len() as f64;
            10.0 * (power + 1.0).log10()
        })
        .collect();
    let loudest = energy.iter().copied().fold(f64::MIN, f64::max);
    if loudest <= 10.0 * 2.0f64.log10() {
        return None;
    }
    let speech = |e: &&f64| **e >= loudest - SPEECH_RANGE_DB;
    let first = energy.iter().position(|e| speech(&e))?;
    let last = energy.iter().rposition(|e| speech(&e))?;
    Some((
        first * ENERGY_FRAME,
        ((last + 1) * ENERGY_FRAME).min(samples.len()),
    ))
}

/// The WAV recordings of `dir`, in name order.
fn read_recordings(dir: &Path) -> Result<Vec<Recording>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("--recordings {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    paths.sort();
    let wanted = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: RATE as u32,
    };
    let mut recordings = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let audio = parse_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if audio.format != wanted {
            return Err(format!(
                "{}: {:?}; the bench streams 16 kHz LINEAR16 recordings",
                path.display(),
                audio.format
            ));
        }
        let samples: Vec<i16> = audio
            .data
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect();
        if let Some((speech_start, speech_end)) = speech_bounds(&samples) {
            recordings.push(Recording {
                samples,
                speech_start,
                speech_end,
            });
        }
    }
    if recordings.is_empty() {
        return Err(format!(
            "--recordings {}: no WAV file with speech",
            dir.display()
        ));
    }
    Ok(recordings)
}

/// What one session streams: its audio and, per recording in it, where the speech starts and
/// ends on the session clock (samples).
#[derive(Debug, Clone, Default)]
struct Program {
    audio: Vec<i16>,
    speech: Vec<(usize, usize)>,
}

/// Recordings from the `first`th on, round, each followed by `pause` samples of silence, until
/// `samples` are reached (at least one recording).
fn program(recordings: &[Recording], first: usize, pause: usize, samples: usize) -> Program {
    let mut out = Program::default();
    for recording in recordings.iter().cycle().skip(first) {
        if !out.speech.is_empty() && out.audio.len() >= samples {
            break;
        }
        let offset = out.audio.len();
        out.speech.push((
            offset + recording.speech_start,
            offset + recording.speech_end,
        ));
        out.audio.extend_from_slice(&recording.samples);
        out.audio.extend(std::iter::repeat_n(0i16, pause));
    }
    out
}

/// What one session saw.
#[derive(Debug, Default)]
struct SessionResult {
    /// Held: `closed`, then Close 1000.
    held: bool,
    /// Refused with `busy`.
    busy: bool,
    /// Why it failed otherwise.
    failure: Option<String>,
    /// Final latencies, µs, one per recording closed.
    latencies_us: Vec<u32>,
    /// Recordings whose closing final never came.
    missed: usize,
    finals: usize,
    interims: usize,
}

/// A final as received: when, and where it ends on the session clock (ms).
struct Arrival {
    at: Instant,
    end_ms: u64,
}

/// The latencies of the closing finals of `program`'s recordings, and how many were missed.
fn closing_latencies(program: &Program, sent: &[Instant], finals: &[Arrival]) -> (Vec<u32>, usize) {
    let ms = |samples: usize| (samples / (RATE / 1_000)) as u64;
    let mut latencies = Vec::new();
    let mut missed = 0;
    for (k, &(_, end)) in program.speech.iter().enumerate() {
        let next_start = program
            .speech
            .get(k + 1)
            .map_or(u64::MAX, |&(start, _)| ms(start));
        let from = ms(end).saturating_sub(CLOSING_SLACK_MS);
        let closing = finals
            .iter()
            .filter(|f| f.end_ms >= from && f.end_ms < next_start)
            .map(|f| f.at)
            .max();
        let frame = end.saturating_sub(1) / FRAME_SAMPLES;
        match (closing, sent.get(frame)) {
            (Some(at), Some(&sent_at)) => latencies.push(
                u32::try_from(at.saturating_duration_since(sent_at).as_micros())
                    .unwrap_or(u32::MAX),
            ),
            _ => missed += 1,
        }
    }
    (latencies, missed)
}

/// Streams `program` through the gateway at `addr` as one session.
async fn session(
    addr: String,
    program: Arc<Program>,
    interim: bool,
    delay: Duration,
) -> SessionResult {
    tokio::time::sleep(delay).await;
    let mut result = SessionResult::default();
    let url = format!("ws://{addr}/v1/listen");
    let (ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(connected) => connected,
        Err(e) => {
            result.failure = Some(format!("connect: {e}"));
            return result;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":RATE,
        "language_code":"en-US","interim_results":interim});
    if let Err(e) = sink.send(Message::Text(start.to_string().into())).await {
        result.failure = Some(format!("send start: {e}"));
        return result;
    }
    // The reader: every message until the connection ends.
    let reader = tokio::spawn(async move {
        let mut finals = Vec::new();
        let mut interims = 0;
        let mut error: Option<String> = None;
        let mut closed = false;
        let mut close_code = None;
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                    match value["type"].as_str() {
                        Some("transcript") if value["is_final"] == true => finals.push(Arrival {
                            at: Instant::now(),
                            end_ms: value["end_ms"].as_u64().unwrap_or(0),
                        }),
                        Some("transcript") => interims += 1,
                        Some("error") => {
                            error = Some(value["code"].as_str().unwrap_or("?").to_string())
                        }
                        Some("closed") => closed = true,
                        _ => {}
                    }
                }
                Message::Close(frame) => close_code = frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
        (finals, interims, error, closed, close_code)
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut sent = Vec::with_capacity(program.audio.len() / FRAME_SAMPLES + 1);
    for frame in program.audio.chunks(FRAME_SAMPLES) {
        ticker.tick().await;
        let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
        sent.push(Instant::now());
        if sink.send(Message::Binary(bytes.into())).await.is_err() {
            // The server ended the session: the reader has its reason.
            break;
        }
    }
    let _ = sink
        .send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await;
    let Ok(Ok((finals, interims, error, closed, close_code))) =
        tokio::time::timeout(CLOSE_TIMEOUT, reader).await
    else {
        result.failure = Some("timeout".to_string());
        return result;
    };
    result.finals = finals.len();
    result.interims = interims;
    result.busy = error.as_deref() == Some("busy");
    result.held = closed && close_code == Some(1000) && error.is_none();
    if !result.held && !result.busy {
        result.failure = Some(match error {
            Some(code) => format!("error {code}"),
            None => format!("closed {close_code:?} without closed"),
        });
    }
    if result.held {
        (result.latencies_us, result.missed) = closing_latencies(&program, &sent, &finals);
    }
    result
}

/// One level's figures.
#[derive(Debug)]
struct Level {
    sessions: usize,
    held: usize,
    busy: usize,
    failed: Vec<String>,
    finals: usize,
    interims: usize,
    missed: usize,
    latency: Option<Percentiles>,
    server_cores: Option<f64>,
    machine_cores: Option<f64>,
    carried: bool,
}

fn run_level(
    args: &SpeechArgs,
    recordings: &[Recording],
    sessions: usize,
) -> Result<Level, String> {
    let mut env: Vec<(&str, String)> = vec![
        ("VOXGATE_RECOGNIZER__BACKEND", "local".to_string()),
        ("VOXGATE_LOCAL__ENGINE", args.engine.clone()),
        // The whole load comes from one address: lift the per-client limits.
        ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1e9".to_string()),
        (
            "VOXGATE_SESSION__MAX_SESSIONS_PER_IP",
            "1000000".to_string(),
        ),
    ];
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--env {pair:?}: expected KEY=VALUE"))?;
        env.push((key, value.to_string()));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mode = if args.finals_only {
        "finals"
    } else {
        "interims"
    };
    let log = args.out.join(format!(
        "speech-{}-{mode}-{sessions}.gateway.log",
        args.engine
    ));
    let gateway = Server::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &env,
        &args.log,
        &log,
    )?;
    let pause = (args.pause_ms as usize) * RATE / 1_000;
    let length = (args.duration.max(0.0) * RATE as f64) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the bench's runtime: {e}"))?;
    let before = process::sample(gateway.pid())?;
    let machine_before = process::machine_cpu();
    let started = Instant::now();
    let results: Vec<SessionResult> = runtime.block_on(async {
        let tasks = (0..sessions).map(|i| {
            let program = Arc::new(program(recordings, i % recordings.len(), pause, length));
            // Spread over a frame period and more, so that sessions do not tick together.
            let delay = Duration::from_millis(i as u64 * 370);
            tokio::spawn(session(
                gateway.addr.clone(),
                program,
                !args.finals_only,
                delay,
            ))
        });
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|e| SessionResult {
                    failure: Some(format!("session task: {e}")),
                    ..SessionResult::default()
                })
            })
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let after = process::sample(gateway.pid())?;
    let machine_cores = machine_before
        .zip(process::machine_cpu())
        .map(|(b, a)| b.busy_cores_until(&a, secs));
    gateway.stop()?;
    let mut latencies: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    let latency = Percentiles::of_micros(&mut latencies);
    let held = results.iter().filter(|r| r.held).count();
    let busy = results.iter().filter(|r| r.busy).count();
    let missed = results.iter().map(|r| r.missed).sum();
    let carried =
        held == sessions && missed == 0 && latency.is_some_and(|l| l.p99 <= args.max_p99_ms);
    Ok(Level {
        sessions,
        held,
        busy,
        failed: results.iter().filter_map(|r| r.failure.clone()).collect(),
        finals: results.iter().map(|r| r.finals).sum(),
        interims: results.iter().map(|r| r.interims).sum(),
        missed,
        latency,
        server_cores: Some((after.cpu_secs - before.cpu_secs) / secs),
        machine_cores,
        carried,
    })
}

/// The header of the levels' table.
const HEADER: &str = "| engine | results | sessions | held / busy / failed | finals (missed) | \
interims | final latency p50 / p90 / p99 / max (ms) | server cores | machine busy cores | carried |\n\
|---|---|---|---|---|---|---|---|---|---|\n";

fn row(args: &SpeechArgs, level: &Level) -> String {
    let latency = level.latency.map_or("—".to_string(), |l| {
        format!("{:.0} / {:.0} / {:.0} / {:.0}", l.p50, l.p90, l.p99, l.max)
    });
    let cores = |c: Option<f64>| c.map_or("—".to_string(), |c| format!("{c:.2}"));
    format!(
        "| {} | {} | {} | {} / {} / {} | {} ({}) | {} | {} | {} | {} | {} |\n",
        args.engine,
        if args.finals_only {
            "finals only"
        } else {
            "with interims"
        },
        level.sessions,
        level.held,
        level.busy,
        level.failed.len(),
        level.finals,
        level.missed,
        level.interims,
        latency,
        cores(level.server_cores),
        cores(level.machine_cores),
        if level.carried { "yes" } else { "no" },
    )
}

/// Runs `voxgate bench speech`: prints the levels' table and the most sessions carried.
pub fn run(args: &SpeechArgs) -> Result<(), String> {
    if !matches!(args.engine.as_str(), "moonshine" | "pocketsphinx") {
        return Err(format!(
            "--engine {:?}: expected moonshine or pocketsphinx",
            args.engine
        ));
    }
    if args.duration.is_nan() || args.duration <= 0.0 {
        return Err("--duration must be a positive number of seconds".to_string());
    }
    let recordings = read_recordings(&args.recordings)?;
    print!("{HEADER}");
    let mut most = None;
    for &sessions in &args.sessions {
        let level = run_level(args, &recordings, sessions)?;
        print!("{}", row(args, &level));
        for failure in level.failed.iter().take(3) {
            eprintln!("  {sessions} sessions: {failure}");
        }
        if level.carried {
            most = Some(sessions);
        } else if args.stop_at_first_failure {
            break;
        }
    }
    match most {
        Some(n) => println!(
            "\nmost sessions carried ({}, p99 final latency ≤ {} ms): {n}",
            args.engine, args.max_p99_ms
        ),
        None => println!("\nno level carried"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize, amplitude: f64) -> Vec<i16> {
        (0..ms * 16)
            .map(|i| (amplitude * (i as f64 * 0.3).sin()) as i16)
            .collect()
    }

    #[test]
    fn speech_is_found_between_silences() {
        let samples = [tone(200, 0.0), tone(500, 8_000.0), tone(300, 5.0)].concat();
        assert_eq!(speech_bounds(&samples), Some((3_200, 11_200)));
        assert_eq!(speech_bounds(&tone(300, 0.0)), None);
    }

    /// A closing final is the last one ending near or after the end of speech and before the
    /// next recording's speech; its latency counts from the frame holding the end of speech.
    #[test]
    fn closing_finals_and_their_latency() {
        let program = Program {
            audio: Vec::new(),
            speech: vec![(1_600, 16_000), (32_000, 48_000)],
        };
        let t0 = Instant::now();
        let sent: Vec<Instant> = (0..40)
            .map(|k| t0 + Duration::from_millis(100 * k))
            .collect();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let finals = vec![
            // Mid-utterance final of the first recording: not the closing one.
            Arrival {
                at: at(700),
                end_ms: 500,
            },
            Arrival {
                at: at(1_600),
                end_ms: 1_200,
            },
        ];
        let (latencies, missed) = closing_latencies(&program, &sent, &finals);
        // Speech ends at 1 000 ms: frame 9 (900 ms) holds its last sample.
        assert_eq!(latencies, vec![700_000]);
        assert_eq!(missed, 1);
    }

    #[test]
    fn programs_start_at_different_recordings_and_cover_the_duration() {
        let recordings: Vec<Recording> = (1..=3)
            .map(|n| Recording {
                samples: vec![n as i16; 1_000],
                speech_start: 100,
                speech_end: 900,
            })
            .collect();
        let p = program(&recordings, 1, 500, 4_000);
        assert_eq!(p.audio.first(), Some(&2));
        assert_eq!(p.speech, vec![(100, 900), (1_600, 2_400), (3_100, 3_900)]);
        assert!(p.audio.len() >= 4_000);
    }
}
