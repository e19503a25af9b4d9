//! `voxgate stream` against real processes on loopback: it streams a file through `voxgate serve`
//! into `voxgate emulator`, prints the final transcripts on stdout, and exits non-zero on errors.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::process::*;
use voxgate_emulator::synth;

const TEXT: &str = "streaming from the command line. works";

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn wav(rate: u32, pcm: &[u8]) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    for field in [16u32, 1 | (1 << 16), rate, rate * 2, 2 | (16 << 16)] {
        v.extend_from_slice(&field.to_le_bytes());
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(pcm);
    v
}

fn stream(url: &str, extra: &[&str], file: &PathBuf) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["stream", "--url", url])
        .args(extra)
        .arg(file)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run voxgate stream: {e}"))
}

/// The text of the final lines `[ start – end ] text` printed on stdout.
fn finals(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, t)| t.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Real time and `--fast` (flow control by acks), raw and WAV input: the same exact transcript.
#[test]
fn stream_prints_exact_finals_at_real_time_and_fast() {
    let emulator = emulator(&[]);
    let gateway = gateway(&emulator, &[]);
    let url = format!("ws://{}/v1/listen", gateway.addr);
    let pcm = synth::encode(TEXT, 16_000, synth::SynthEncoding::Linear16);
    let raw = temp_file("speech.raw", &pcm);
    let wav = temp_file("speech.wav", &wav(16_000, &pcm));
    let expected = synth::expected_words(TEXT).join(" ");
    let runs = [
        ("raw, real time", vec![], raw),
        ("wav, fast, base64", vec!["--fast", "--base64"], wav),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(name, flags, file)| {
                let url = url.as_str();
                s.spawn(move || (name, stream(url, flags, file)))
            })
            .collect();
        for h in handles {
            let (name, out) = h.join().unwrap_or_else(|_| panic!("thread"));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{name}: {:?} {stderr}", out.status);
            assert_eq!(finals(&out), expected, "{name}: {stderr}");
            assert!(stderr.contains("closed:"), "{name}: {stderr}");
        }
    });
}

/// A server-side error (a sample rate LINEAR16 does not allow) and a missing file: non-zero exit
/// with the reason.
#[test]
fn stream_exits_non_zero_on_errors() {
    let emulator = emulator(&[]);
    let gateway = gateway(&emulator, &[]);
    let url = format!("ws://{}/v1/listen", gateway.addr);
    let bad_rate = temp_file("bad-rate.wav", &wav(96_000, &[0; 9_600]));
    let out = stream(&url, &[], &bad_rate);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unsupported_sample_rate"), "{stderr}");

    let out = stream(&url, &[], &PathBuf::from("/nonexistent/audio.wav"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/audio.wav"));
}
