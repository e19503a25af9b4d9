//! `voxgate bench --direct`: the same sessions straight to the emulator over gRPC, with no gateway
//! — the ceiling the gateway is measured against. Each session is one `StreamingRecognize` call of
//! Speech v1 or v2 (`--api`), made with the gateway's own [`SpeechApi`] — the same first request,
//! audio requests, metadata and reading of responses as the gateway's calls — fed by the same
//! pacer, its finals checked the same way.
//!
//! The call is opened when the session starts streaming, not during the ramp: an idle call would
//! hit the recogniser's audio timeout, and here there is no supervisor to restart it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use voxgate_actors::audio::{AudioFormat, Encoding};
use voxgate_actors::protocol::StartConfig;
use voxgate_actors::recognizer::google_v1::{ApiEvent, SpeechApi, StreamClock, V1};
use voxgate_actors::recognizer::google_v2::{RecognizerPath, V2};

use super::measure::{FinalChecker, SessionOutcome};
use super::pacer::{Entry, Sink};
use super::script::Plan;
use super::shared::Shared;
use voxgate_emulator::synth::SynthEncoding;

/// Concurrent calls per HTTP/2 connection (the emulator's, and Google's, limit).
const STREAMS_PER_CONNECTION: usize = 100;
/// Requests that may wait for tonic to send them.
const REQUEST_QUEUE: usize = 64;
/// Opening a call may take this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence from the emulator this long fails the session.
const READ_TIMEOUT: Duration = Duration::from_secs(40);

/// HTTP/2 connections to the emulator, each carrying at most [`STREAMS_PER_CONNECTION`] calls.
pub struct ChannelPool {
    /// How to connect.
    endpoint: Endpoint,
    /// The connections opened so far.
    channels: Mutex<Vec<Arc<Pooled>>>,
}

struct Pooled {
    /// One HTTP/2 connection (clones share it).
    channel: Channel,
    /// Calls on it now.
    calls: AtomicUsize,
}

/// A call's slot on a connection; freed on drop.
pub struct Lease(Arc<Pooled>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ChannelPool {
    /// A pool for `http://HOST:PORT` (connects lazily).
    pub fn new(endpoint: &str) -> Result<ChannelPool, String> {
        let endpoint = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("--endpoint {endpoint}: {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        Ok(ChannelPool {
            endpoint,
            channels: Mutex::new(Vec::new()),
        })
    }

    fn lease(&self) -> Lease {
        let mut channels = match self.channels.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let pooled = match channels
            .iter()
            .find(|c| c.calls.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION)
        {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(Pooled {
                    channel: self.endpoint.connect_lazy(),
                    calls: AtomicUsize::new(0),
                });
                channels.push(c.clone());
                c
            }
        };
        pooled.calls.fetch_add(1, Ordering::Relaxed);
        Lease(pooled)
    }
}

/// The gateway's own configuration of its calls, for a session of this script.
fn start_config(shared: &Shared) -> StartConfig {
    let format = shared.script.format;
    StartConfig {
        format: AudioFormat {
            encoding: match format.encoding {
                SynthEncoding::Linear16 => Encoding::Linear16,
                SynthEncoding::Mulaw => Encoding::Mulaw,
                SynthEncoding::Alaw => Encoding::Alaw,
            },
            sample_rate_hz: format.sample_rate_hz,
        },
        language_code: "en-US".to_string(),
        interim_results: shared.interim,
        enable_automatic_punctuation: false,
        model: String::new(),
        phrases: Vec::new(),
        single_utterance: false,
        features: Default::default(),
        frame_ms: None,
    }
}

/// Which Speech API version `--direct` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectApi {
    V1,
    V2,
}

impl DirectApi {
    /// `v1` or `v2`.
    pub fn parse(name: &str) -> Result<DirectApi, String> {
        match name {
            "v1" => Ok(DirectApi::V1),
            "v2" => Ok(DirectApi::V2),
            other => Err(format!("{other:?}: expected v1 or v2")),
        }
    }
}

/// The recognizer a v2 call names: the emulator's default location and the implicit recognizer.
fn bench_recognizer() -> RecognizerPath {
    RecognizerPath {
        project: "voxgate-bench".to_string(),
        location: "global".to_string(),
        recognizer: "_".to_string(),
    }
}

/// Runs one session of `plan` as a direct call of `api`.
pub async fn direct_session(
    shared: &Shared,
    pool: &ChannelPool,
    plan: Arc<Plan>,
    api: DirectApi,
) -> SessionOutcome {
    match api {
        DirectApi::V1 => session_on(&V1, shared, pool, plan).await,
        DirectApi::V2 => match V2::new(&bench_recognizer()) {
            Ok(v2) => session_on(&v2, shared, pool, plan).await,
            Err(e) => SessionOutcome {
                failure: Some(e),
                ..SessionOutcome::default()
            },
        },
    }
}

/// Opens a call of `api` on `channel` whose audio comes from `audio`.
async fn open_call<A: SpeechApi>(
    api: &A,
    channel: Channel,
    config: &StartConfig,
    audio: mpsc::Receiver<Vec<u8>>,
) -> Result<tonic::Streaming<A::Response>, tonic::Status> {
    let requests = futures_util::stream::iter([api.config_request(config)])
        .chain(ReceiverStream::new(audio).map(|frame| A::audio_request(frame.into())));
    let mut request = tonic::Request::new(requests);
    api.add_metadata(&mut request);
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(A::PATH);
    grpc.streaming(request, path, tonic_prost::ProstCodec::default())
        .await
        .map(tonic::Response::into_inner)
}

async fn session_on<A: SpeechApi>(
    api: &A,
    shared: &Shared,
    pool: &ChannelPool,
    plan: Arc<Plan>,
) -> SessionOutcome {
    let mut outcome = SessionOutcome {
        ready: true,
        ..SessionOutcome::default()
    };
    shared.settle();
    if shared.steady {
        let mut go = shared.go.clone();
        if go.wait_for(|go| *go).await.is_err() {
            outcome.failure = Some("the bench stopped".to_string());
            return outcome;
        }
    }
    let mut checker = FinalChecker::new(&shared.script, &plan);
    let lease = pool.lease();
    let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
    let config = start_config(shared);
    let opened = tokio::time::timeout(
        OPEN_TIMEOUT,
        open_call(api, lease.0.channel.clone(), &config, queue),
    )
    .await;
    let mut responses = match opened {
        Ok(Ok(responses)) => responses,
        Ok(Err(status)) => {
            outcome.failure = Some(format!("open: {:?}", status.code()));
            return outcome;
        }
        Err(_) => {
            outcome.failure = Some("open: timed out".to_string());
            return outcome;
        }
    };
    let (entry, handle) = Entry::new(Sink::Grpc(Some(requests)), plan.clone(), false);
    shared.pacer.register(entry);
    // One stream from the start of the audio: its times are the session's.
    let mut previous_final_end_ms = 0;
    let result: Result<(), String> = loop {
        let message = match tokio::time::timeout(READ_TIMEOUT, responses.message()).await {
            Err(_) => {
                break Err(format!(
                    "timeout: nothing from the emulator for {} s",
                    READ_TIMEOUT.as_secs()
                ))
            }
            Ok(message) => message,
        };
        match message {
            Ok(Some(response)) => {
                let at_us = shared.pacer.now_us();
                let clock = StreamClock {
                    origin_ms: 0,
                    previous_final_end_ms,
                    language: &config.language_code,
                };
                for event in api.events(response, clock) {
                    let ApiEvent::Result(transcript) = event else {
                        continue;
                    };
                    if !transcript.is_final {
                        continue;
                    }
                    previous_final_end_ms = transcript.end_ms;
                    let words = transcript.words.iter().map(|w| (w.start_ms, w.end_ms));
                    checker.on_final(&transcript.transcript, words, at_us);
                }
            }
            Ok(None) => break Ok(()),
            Err(status) => break Err(format!("status {:?}", status.code())),
        }
    };
    if result.is_err() {
        handle.abort.store(true, Ordering::Relaxed);
    }
    let log = handle.done.await.unwrap_or_default();
    drop(lease);
    outcome.audio_secs = (log.frames_sent * shared.script.format.frame_ms) as f64 / 1000.0;
    let completed = result.is_ok() && log.completed;
    checker.finish(&log.marks_us, completed, &mut outcome);
    outcome.failure = match result {
        Err(reason) => Some(reason),
        Ok(()) if !log.completed => Some(
            log.error
                .unwrap_or_else(|| "the call ended before the audio".to_string()),
        ),
        Ok(()) => None,
    };
    outcome
}
