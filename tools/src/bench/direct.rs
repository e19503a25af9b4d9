//! `voxgate bench --direct`: the same sessions straight to the emulator over gRPC, with no gateway
//! — the ceiling the gateway is measured against. Each session is one `StreamingRecognize` call
//! made with the googleapis `SpeechClient`, configured exactly as the gateway configures its own
//! calls (the gateway's `config_request`), fed by the same pacer, its finals checked the same way.
//!
//! The call is opened when the session starts streaming, not during the ramp: an idle call would
//! hit the recogniser's audio timeout, and here there is no supervisor to restart it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::speech_client::SpeechClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use voxgate_actors::audio::{AudioFormat, Encoding};
use voxgate_actors::protocol::StartConfig;
use voxgate_actors::recognizer::google_v1::convert::{config_request, duration_ms};

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
    }
}

/// Runs one session of `plan` as a direct call.
pub async fn direct_session(
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
    // The queue is empty: the configuration fits.
    let _ = requests.try_send(config_request(&start_config(shared)));
    let mut client = SpeechClient::new(lease.0.channel.clone());
    let opened = tokio::time::timeout(
        OPEN_TIMEOUT,
        client.streaming_recognize(ReceiverStream::new(queue)),
    )
    .await;
    let mut responses = match opened {
        Ok(Ok(response)) => response.into_inner(),
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
                for result in response.results.iter().filter(|r| r.is_final) {
                    let Some(best) = result.alternatives.first() else {
                        checker.on_final("", std::iter::empty::<(u64, u64)>(), at_us);
                        continue;
                    };
                    let words = best.words.iter().map(|w| {
                        (
                            duration_ms(w.start_time.as_ref()),
                            duration_ms(w.end_time.as_ref()),
                        )
                    });
                    checker.on_final(&best.transcript, words, at_us);
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
