//! The `voxgate emulator` command as a user runs it: `encode` writes the synthetic codec's bytes,
//! and the server prints its address, answers Google's `StreamingRecognize`, and exits 0 on SIGTERM.
//! (The emulator's behaviour is tested in `emulator/tests/`; this file only needs the binary.)

#[path = "../emulator/tests/common/mod.rs"]
mod emulator_client;

use emulator_client::{config_request, fixed_chunks, run_call, within, Pace, Setup};
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::speech_client::SpeechClient;
use tonic::transport::Channel;
use voxgate_emulator::synth::{self, SynthEncoding};

/// Kills and reaps the emulator process if a test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `voxgate emulator --listen 127.0.0.1:0` prints its address, serves, and exits 0 on SIGTERM;
/// `voxgate emulator encode` writes the encoder's bytes.
#[tokio::test]
async fn the_command_serves_and_encodes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let encoded = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args([
            "emulator",
            "encode",
            "hello there.",
            "--rate",
            "8000",
            "--encoding",
            "mulaw",
        ])
        .stdout(Stdio::piped())
        .output()
        .expect("run voxgate emulator encode");
    assert!(encoded.status.success());
    assert_eq!(
        encoded.stdout,
        synth::encode("hello there.", 8_000, SynthEncoding::Mulaw)
    );

    let mut child = KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .args([
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--stream-limit-secs",
                "30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start voxgate emulator"),
    ));
    let stdout = child
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("piped stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader joins")
    .expect("read the first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect()
        .await
        .expect("connect to the process");
    let mut client = SpeechClient::new(channel);
    let audio = synth::encode("over the wire", 16_000, SynthEncoding::Linear16);
    let outcome = within(run_call(
        &mut client,
        config_request(&Setup::default()),
        fixed_chunks(&audio, 3_200),
        Pace::Burst,
        true,
    ))
    .await;
    assert_eq!(outcome.final_transcripts(), vec!["over the wire"]);

    let mut process = child.0.take().expect("process still owned");
    let killed = Command::new("kill")
        .args(["-TERM", &process.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || process.wait())
        .await
        .expect("waiter joins")
        .expect("process exits");
    assert!(status.success(), "exit status {status}");
}
