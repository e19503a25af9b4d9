//! What the emulator's tests (and the root crate's test of the `voxgate emulator` command) use to
//! talk to an emulator as Google's clients do: the googleapis `SpeechClient` over a plaintext tonic
//! channel, a whole call fed at a chosen pace, and what came back.
#![allow(dead_code)] // each test binary uses its own part

use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    recognition_config::AudioEncoding, speech_client::SpeechClient,
    streaming_recognize_request::StreamingRequest, RecognitionConfig, StreamingRecognitionConfig,
    StreamingRecognitionResult, StreamingRecognizeRequest, StreamingRecognizeResponse,
};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};
use voxgate_emulator::{spawn, EmulatorConfig, EmulatorHandle};

// ───────────────────────────── helpers ─────────────────────────────

/// Every test gives up after this long rather than hang.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);

pub async fn start(config: EmulatorConfig) -> EmulatorHandle {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    spawn(listener, config).await.expect("emulator starts")
}

pub async fn client(emulator: &EmulatorHandle) -> SpeechClient<Channel> {
    let channel = Channel::from_shared(emulator.endpoint())
        .expect("valid endpoint")
        .connect()
        .await
        .expect("connect to the emulator");
    SpeechClient::new(channel)
}

/// What the test asks for in the config request.
#[derive(Clone)]
pub struct Setup {
    pub encoding: AudioEncoding,
    pub rate: i32,
    pub interim: bool,
    pub single_utterance: bool,
    pub word_times: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            encoding: AudioEncoding::Linear16,
            rate: 16_000,
            interim: false,
            single_utterance: false,
            word_times: false,
        }
    }
}

pub fn config_request(setup: &Setup) -> StreamingRecognizeRequest {
    StreamingRecognizeRequest {
        streaming_request: Some(StreamingRequest::StreamingConfig(
            StreamingRecognitionConfig {
                config: Some(RecognitionConfig {
                    encoding: setup.encoding as i32,
                    sample_rate_hertz: setup.rate,
                    language_code: "en-US".to_string(),
                    enable_word_time_offsets: setup.word_times,
                    ..Default::default()
                }),
                interim_results: setup.interim,
                single_utterance: setup.single_utterance,
                ..Default::default()
            },
        )),
    }
}

pub fn audio_request(audio: Vec<u8>) -> StreamingRecognizeRequest {
    StreamingRecognizeRequest {
        streaming_request: Some(StreamingRequest::AudioContent(audio.into())),
    }
}

/// Everything a call returned.
#[derive(Debug)]
pub struct Outcome {
    pub responses: Vec<StreamingRecognizeResponse>,
    pub end: Result<(), Status>,
}

impl Outcome {
    pub fn results(&self) -> impl Iterator<Item = &StreamingRecognitionResult> {
        self.responses.iter().flat_map(|r| &r.results)
    }

    pub fn finals(&self) -> Vec<&StreamingRecognitionResult> {
        self.results().filter(|r| r.is_final).collect()
    }

    pub fn final_transcripts(&self) -> Vec<String> {
        self.finals()
            .iter()
            .map(|r| r.alternatives[0].transcript.clone())
            .collect()
    }

    pub fn code(&self) -> Code {
        match &self.end {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        }
    }

    pub fn message(&self) -> &str {
        match &self.end {
            Ok(()) => "",
            Err(status) => status.message(),
        }
    }
}

pub async fn drain(mut responses: tonic::Streaming<StreamingRecognizeResponse>) -> Outcome {
    let mut received = Vec::new();
    loop {
        match responses.message().await {
            Ok(Some(response)) => received.push(response),
            Ok(None) => {
                return Outcome {
                    responses: received,
                    end: Ok(()),
                }
            }
            Err(status) => {
                return Outcome {
                    responses: received,
                    end: Err(status),
                }
            }
        }
    }
}

/// How the audio is fed.
#[derive(Clone, Copy)]
pub enum Pace {
    /// As fast as the client can.
    Burst,
    /// Request `i` is sent `i × period` after the first.
    Every(Duration),
}

/// Runs a whole call: `first`, then one audio request per chunk at `pace`, then a half-close (or,
/// with `half_close` false, keeps the request stream open until the server ends the call).
pub async fn run_call(
    client: &mut SpeechClient<Channel>,
    first: StreamingRecognizeRequest,
    chunks: Vec<Vec<u8>>,
    pace: Pace,
    half_close: bool,
) -> Outcome {
    let (tx, rx) = mpsc::channel(8);
    let sender = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        if tx.send(first).await.is_err() {
            return;
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            if let Pace::Every(period) = pace {
                tokio::time::sleep_until(started + period * i as u32).await;
            }
            if tx.send(audio_request(chunk)).await.is_err() {
                return;
            }
        }
        if !half_close {
            tx.closed().await;
        }
    });
    let outcome = match client.streaming_recognize(ReceiverStream::new(rx)).await {
        Ok(response) => drain(response.into_inner()).await,
        Err(status) => Outcome {
            responses: Vec::new(),
            end: Err(status),
        },
    };
    sender.abort();
    outcome
}

/// A call whose requests the test sends one by one.
pub struct OpenCall {
    pub requests: mpsc::Sender<StreamingRecognizeRequest>,
    pub responses: tonic::Streaming<StreamingRecognizeResponse>,
}

pub async fn open_call(
    client: &mut SpeechClient<Channel>,
    first: StreamingRecognizeRequest,
) -> Result<OpenCall, Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(first)
        .await
        .map_err(|_| Status::internal("request channel closed"))?;
    let response = client.streaming_recognize(ReceiverStream::new(rx)).await?;
    Ok(OpenCall {
        requests: tx,
        responses: response.into_inner(),
    })
}

impl OpenCall {
    /// Half-closes and collects the rest.
    pub async fn finish(self) -> Outcome {
        drop(self.requests);
        drain(self.responses).await
    }
}

pub fn fixed_chunks(audio: &[u8], size: usize) -> Vec<Vec<u8>> {
    audio.chunks(size).map(<[u8]>::to_vec).collect()
}

pub fn random_chunks(audio: &[u8], rng: &mut StdRng, max: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = audio;
    while !rest.is_empty() {
        let n = rng.random_range(1..=max).min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    chunks
}

pub fn secs(duration: &Option<prost_types::Duration>) -> f64 {
    duration
        .as_ref()
        .map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, future)
        .await
        .expect("test finished in time")
}
