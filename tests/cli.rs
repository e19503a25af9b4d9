//! `voxgate stream` as a user runs it, against real processes on loopback (`voxgate serve` in
//! front of `voxgate emulator`, whose synthetic speech gives exact transcripts): stdin as well as
//! files, `--json` and `--vtt`/`--srt` well-formed, and each kind of failure — a bad file, an
//! unreachable server, a refused key — a clear message and its own exit code.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::process::*;
use serde_json::Value;
use voxgate_emulator::synth;

const TEXT: &str = "piped into the client. then subtitled";

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn wav(rate: u32, channels: u16, pcm: &[u8]) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    let block = 2 * u32::from(channels);
    for field in [
        16,
        1 | (u32::from(channels) << 16),
        rate,
        rate * block,
        block | (16 << 16),
    ] {
        v.extend_from_slice(&field.to_le_bytes());
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(pcm);
    v
}

/// A gateway in front of an emulator, and the synthetic speech they transcribe exactly.
struct Stack {
    _gateway: Process,
    _emulator: Process,
    url: String,
    /// 16 kHz LINEAR16 speech of [`TEXT`], and the words it must give.
    pcm: Vec<u8>,
    expected: String,
}

fn stack(env: &[(&str, &str)]) -> Stack {
    let emulator = emulator(&[]);
    let gateway = gateway(&emulator, env);
    Stack {
        url: format!("ws://{}/v1/listen", gateway.addr),
        _gateway: gateway,
        _emulator: emulator,
        pcm: synth::encode(TEXT, 16_000, synth::SynthEncoding::Linear16),
        expected: synth::expected_words(TEXT).join(" "),
    }
}

/// One run of the client: a name, its arguments, what it reads on stdin.
type Run<'a> = (&'a str, Vec<&'a str>, Option<&'a [u8]>);

/// Runs `voxgate stream ARGS…` with `stdin` piped in (or none).
fn voxgate_stream(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .arg("stream")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("VOXGATE_API_KEY")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run voxgate stream: {e}"));
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written from a thread: the client reads while it streams.
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("voxgate stream: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The text of the final lines `[ start – end ] text`.
fn final_lines(out: &Output) -> String {
    stdout(out)
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, t)| t.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cue texts of a WebVTT or SRT document, checking each cue's shape.
fn cue_texts(document: &str, separator: char) -> String {
    let mut texts = Vec::new();
    for (i, cue) in document.trim_end().split("\n\n").enumerate() {
        let lines: Vec<&str> = cue.lines().collect();
        assert_eq!(lines.len(), 3, "cue {i}: {cue:?}");
        assert_eq!(lines[0], (i + 1).to_string(), "cue {i}: {cue:?}");
        let (start, end) = lines[1]
            .split_once(" --> ")
            .unwrap_or_else(|| panic!("cue {i}: {cue:?}"));
        for time in [start, end] {
            let shape: String = time
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect();
            assert_eq!(shape, format!("00:00:00{separator}000"), "cue {i}: {cue:?}");
        }
        assert!(start <= end, "cue {i}: {cue:?}");
        texts.push(lines[2]);
    }
    texts.join(" ")
}

/// A WAV piped into stdin and raw audio read from stdin (`-`) print the exact finals, as files
/// do, at real time and `--fast` (flow control by acks), binary and base64; `--json` prints one
/// JSON object per line, every server message.
#[test]
fn stdin_and_files_print_the_finals_and_json_is_one_message_a_line() {
    let Stack {
        url, pcm, expected, ..
    } = &stack(&[]);
    let wav_bytes = wav(16_000, 1, pcm);
    let wav_file = temp_file("speech.wav", &wav_bytes);
    let file = wav_file.to_string_lossy();
    let raw_file = temp_file("speech.raw", pcm);
    let raw = raw_file.to_string_lossy();
    let runs: [Run; 5] = [
        (
            "WAV on stdin, real time",
            vec!["--url", url],
            Some(&wav_bytes),
        ),
        (
            "raw on stdin, fast",
            vec!["--url", url, "--fast", "-"],
            Some(pcm),
        ),
        ("raw file, real time", vec!["--url", url, &raw], None),
        (
            "WAV file, fast, base64",
            vec!["--url", url, "--fast", "--base64", &file],
            None,
        ),
        (
            "--json",
            vec!["--url", url, "--fast", "--json", &file],
            None,
        ),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(name, args, stdin)| s.spawn(move || (name, voxgate_stream(args, *stdin))))
            .collect();
        for handle in handles {
            let (name, out) = handle.join().unwrap_or_else(|_| panic!("thread"));
            assert!(
                out.status.success(),
                "{name}: {:?} {}",
                out.status,
                stderr(&out)
            );
            if *name != "--json" {
                assert_eq!(&final_lines(&out), expected, "{name}: {}", stderr(&out));
                assert!(stderr(&out).contains("closed:"), "{name}: {}", stderr(&out));
                continue;
            }
            let messages: Vec<Value> = stdout(&out)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
                .collect();
            assert!(
                messages.iter().all(|m| m["type"].is_string()),
                "{messages:?}"
            );
            assert_eq!(messages.first().map(|m| &m["type"]), Some(&"ready".into()));
            assert_eq!(messages.last().map(|m| &m["type"]), Some(&"closed".into()));
            let finals: Vec<&str> = messages
                .iter()
                .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
                .filter_map(|m| m["transcript"].as_str())
                .filter(|t| !t.is_empty())
                .collect();
            assert_eq!(&finals.join(" "), expected);
        }
    });
}

/// `--vtt FILE` and `--srt -` write well-formed subtitles of exactly the finals.
#[test]
fn subtitles_are_well_formed() {
    let Stack {
        url, pcm, expected, ..
    } = &stack(&[]);
    let audio = temp_file("subtitled.raw", pcm);
    let vtt = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli/subtitled.vtt");
    let _ = std::fs::remove_file(&vtt);
    let out = voxgate_stream(
        &[
            "--url",
            url,
            "--fast",
            "--vtt",
            &vtt.to_string_lossy(),
            "--srt",
            "-",
            &audio.to_string_lossy(),
        ],
        None,
    );
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
    let webvtt = std::fs::read_to_string(&vtt).unwrap_or_else(|e| panic!("{e}"));
    let cues = webvtt
        .strip_prefix("WEBVTT\n\n")
        .unwrap_or_else(|| panic!("{webvtt:?}"));
    assert_eq!(&cue_texts(cues, '.'), expected);
    // With the SRT on stdout, stdout is the SRT only.
    assert_eq!(&cue_texts(&stdout(&out), ','), expected);
}

/// Each failure says what went wrong and exits with its own code: a file that is not streamable
/// audio (3), a server nobody listens at (4), a key the server refuses (5), a session the server
/// ends with an error (6).
#[test]
fn failures_are_explained_with_their_exit_code() {
    const KEY: &str = "cli-test-key-0123456789";
    let keys = common::api_keys_env(&[KEY]);
    let Stack {
        url: keyed_url,
        pcm,
        ..
    } = &stack(&[("VOXGATE_AUTH__API_KEYS", &keys)]);
    let audio = temp_file("failures.raw", pcm);
    let audio = audio.to_string_lossy();

    let stereo = temp_file("stereo.wav", &wav(16_000, 2, &[0; 64]));
    let out = voxgate_stream(&["--url", keyed_url, &stereo.to_string_lossy()], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 channels"), "{}", stderr(&out));
    let out = voxgate_stream(&["--url", keyed_url, "/nonexistent/audio.wav"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/audio.wav"),
        "{}",
        stderr(&out)
    );
    let out = voxgate_stream(&["--url", keyed_url, "-"], Some(&[]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("stdin: no audio"), "{}", stderr(&out));

    // A port that was free a moment ago: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let nowhere = format!("ws://{free}/v1/listen");
    let out = voxgate_stream(&["--url", &nowhere, &audio], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot connect to"),
        "{}",
        stderr(&out)
    );

    for key in [None, Some("wrong-key-0123456789")] {
        let mut args = vec!["--url", keyed_url.as_str(), "--fast", &audio];
        if let Some(key) = key {
            args.extend(["--api-key", key]);
        }
        let out = voxgate_stream(&args, None);
        assert_eq!(out.status.code(), Some(5), "{key:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("401"), "{key:?}: {}", stderr(&out));
    }
    let out = voxgate_stream(
        &["--url", keyed_url, "--fast", "--api-key", KEY, &audio],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let bad_rate = temp_file("bad-rate.wav", &wav(96_000, 1, &[0; 9_600]));
    let out = voxgate_stream(
        &[
            "--url",
            keyed_url,
            "--api-key",
            KEY,
            &bad_rate.to_string_lossy(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unsupported_sample_rate"),
        "{}",
        stderr(&out)
    );
}
