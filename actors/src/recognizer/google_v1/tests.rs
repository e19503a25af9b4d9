//! Tests of the Google v1 recognizer actor against a fake Speech service on loopback.

use crate::settings::GoogleSettings;
use std::sync::Arc;
use std::time::Duration;

use std::task::Poll;

use bytes::Bytes;
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    streaming_recognize_request::StreamingRequest, streaming_recognize_response::SpeechEventType,
    SpeechRecognitionAlternative, StreamingRecognitionConfig, StreamingRecognitionResult,
    StreamingRecognizeRequest, StreamingRecognizeResponse, WordInfo,
};
use tonic::codegen::{BoxFuture, Service};

use super::*;
use crate::recognizer::contract::test_support::{ended, start_stream, transcripts, until_ended};
use crate::settings::GoogleAuth;
use crate::testing::{start_config, ProbeLog};

const WAIT: Duration = Duration::from_secs(10);

fn factory(endpoint: String) -> GoogleRecognizerFactory {
    let settings = GoogleSettings {
        endpoint,
        auth: GoogleAuth::None,
        connect_timeout_secs: 2.0,
        ..GoogleSettings::default()
    };
    match GoogleEndpoint::new(&settings) {
        Ok(endpoint) => GoogleRecognizerFactory::new(&endpoint, Credentials::none()),
        Err(e) => panic!("loopback endpoint is valid: {e}"),
    }
}

fn start(factory: &GoogleRecognizerFactory) -> (StreamHandle, ProbeLog) {
    start_stream(factory, 7, Arc::new(start_config()))
}

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot bind loopback: {e}"),
    }
}

/// A loopback peer that accepts connections and holds them without a word (no HTTP/2): its port,
/// and the task to abort at the end of the test.
async fn silent_peer() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind loopback: {e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let peer = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, peer)
}

/// Nothing listening: exactly one `Ended(Err(UNAVAILABLE))`, and the lease is returned.
#[actix_rt::test]
async fn unreachable_upstream_ends_unavailable_once() {
    let f = factory(format!("http://127.0.0.1:{}", closed_port()));
    let (handle, log) = start(&f);
    assert_eq!(f.pool().streams(), 1);
    let events = log.wait_count::<RecognizerEvent>(1, WAIT).await;
    let ends = ended(&events);
    assert_eq!(ends.len(), 1, "{events:?}");
    assert_eq!(
        ends[0].as_ref().err().map(|e| e.code),
        Some(tonic::Code::Unavailable)
    );
    assert!(events.iter().all(|e| e.stream_id == 7));
    assert!(
        handle.cancel.send(CancelStream).await.is_err(),
        "the actor stopped"
    );
    assert_eq!(f.pool().streams(), 0);
    assert_eq!(log.all::<RecognizerEvent>().len(), 1, "exactly one Ended");
}

/// `refresh_credentials` (the supervisor's answer to UNAUTHENTICATED) makes the next stream
/// fetch a new token instead of using the cached one.
#[actix_rt::test]
async fn refresh_credentials_invalidates_the_token_cache() {
    let tokens = crate::recognizer::google_auth::tests::provider(Some("tok"), 3_600);
    let Ok(credentials) = Credentials::from_provider(tokens.clone(), None) else {
        panic!("credentials without a quota project are valid");
    };
    let settings = GoogleSettings {
        endpoint: format!("http://127.0.0.1:{}", closed_port()),
        auth: GoogleAuth::None,
        connect_timeout_secs: 2.0,
        ..GoogleSettings::default()
    };
    let f = match GoogleEndpoint::new(&settings) {
        Ok(endpoint) => GoogleRecognizerFactory::new(&endpoint, credentials),
        Err(e) => panic!("loopback endpoint is valid: {e}"),
    };
    let calls = || tokens.calls.load(std::sync::atomic::Ordering::SeqCst);
    for expected_calls in [1, 1] {
        let (_handle, log) = start(&f);
        until_ended(&log, WAIT).await;
        assert_eq!(calls(), expected_calls, "cached token reused");
    }
    f.refresh_credentials();
    let (_handle, log) = start(&f);
    until_ended(&log, WAIT).await;
    assert_eq!(calls(), 2, "a fresh token after refresh_credentials");
}

/// A peer that accepts connections but never speaks HTTP/2: audio piles up in the queue and
/// the stream fails as "upstream not reading" instead of blocking or dropping audio.
#[actix_rt::test]
async fn upstream_not_reading_fails_the_stream() {
    let (port, silent_peer) = silent_peer().await;
    let f = factory(format!("http://127.0.0.1:{port}"));
    let (handle, log) = start(&f);
    for i in 0..(REQUEST_QUEUE_LEN as u64 + 10) {
        handle.audio.do_send(UpstreamAudio::Frame(AudioFrame {
            start_ms: i * 100,
            start_byte: i * 3_200,
            data: Bytes::from(vec![0u8; 3_200]),
        }));
    }
    let events = log.wait_count::<RecognizerEvent>(1, WAIT).await;
    let ends = ended(&events);
    assert_eq!(ends.len(), 1, "{events:?}");
    let failure = ends[0].as_ref().err();
    assert_eq!(failure.map(|f| f.code), Some(tonic::Code::Unavailable));
    assert!(failure.is_some_and(|f| f.message.contains("upstream not reading")));
    silent_peer.abort();
}

/// A cancelled stream stops without reporting `Ended`.
#[actix_rt::test]
async fn cancel_stops_without_ended() {
    let (port, silent_peer) = silent_peer().await;
    let f = factory(format!("http://127.0.0.1:{port}"));
    let (handle, log) = start(&f);
    assert!(handle.cancel.send(CancelStream).await.is_ok());
    assert!(handle.cancel.send(CancelStream).await.is_err(), "stopped");
    assert_eq!(f.pool().streams(), 0, "lease returned");
    let events = log
        .wait_count::<RecognizerEvent>(1, Duration::from_millis(300))
        .await;
    assert!(events.is_empty(), "{events:?}");
    silent_peer.abort();
}

/// How the fake Speech service behaves on a call.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// An interim after 500 ms of audio; on half-close a final over all of it; then OK.
    Transcribe,
    /// Refuse the call with INVALID_ARGUMENT.
    RejectCall,
    /// Answer the first audio with a response whose `error` is OUT_OF_RANGE.
    ErrorInBody,
    /// Answer the first audio with END_OF_SINGLE_UTTERANCE; on half-close a final; then OK.
    EndUtterance,
}

/// What the fake service saw of one call.
#[derive(Debug, Clone, Default)]
struct Seen {
    authorization: Option<String>,
    /// Every request in order: `true` for a configuration, `false` for audio.
    kinds: Vec<bool>,
    config: Option<StreamingRecognitionConfig>,
    audio_bytes: usize,
}

/// A Google-compatible `StreamingRecognize` for one script, on loopback.
#[derive(Clone)]
struct FakeSpeech {
    script: Script,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl tonic::server::NamedService for FakeSpeech {
    const NAME: &'static str = "google.cloud.speech.v1.Speech";
}

impl Service<http::Request<tonic::body::Body>> for FakeSpeech {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = FakeCall(self.clone());
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<
                StreamingRecognizeResponse,
                StreamingRecognizeRequest,
            >::default();
            Ok(tonic::server::Grpc::new(codec)
                .streaming(call, request)
                .await)
        })
    }
}

type Responses = ReceiverStream<Result<StreamingRecognizeResponse, tonic::Status>>;

struct FakeCall(FakeSpeech);

impl Service<tonic::Request<tonic::Streaming<StreamingRecognizeRequest>>> for FakeCall {
    type Response = tonic::Response<Responses>;
    type Error = tonic::Status;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<StreamingRecognizeRequest>>,
    ) -> Self::Future {
        let fake = self.0.clone();
        Box::pin(async move {
            let authorization = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            if fake.script == Script::RejectCall {
                return Err(tonic::Status::invalid_argument(
                    "Invalid recognition 'config': bad sample rate hertz.",
                ));
            }
            let mut requests = request.into_inner();
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(async move {
                let mut seen = Seen {
                    authorization,
                    ..Seen::default()
                };
                while let Ok(Some(request)) = requests.message().await {
                    match request.streaming_request {
                        Some(StreamingRequest::StreamingConfig(c)) => {
                            seen.kinds.push(true);
                            seen.config = Some(c);
                        }
                        Some(StreamingRequest::AudioContent(audio)) => {
                            seen.kinds.push(false);
                            let first = seen.audio_bytes == 0;
                            seen.audio_bytes += audio.len();
                            let reply = match fake.script {
                                Script::ErrorInBody if first => Some(body_error()),
                                Script::EndUtterance if first => Some(end_of_utterance()),
                                Script::Transcribe if seen.audio_bytes == 500 * 32 => {
                                    Some(interim(500))
                                }
                                _ => None,
                            };
                            if let Some(reply) = reply {
                                let _ = tx.send(Ok(reply)).await;
                            }
                            if fake.script == Script::ErrorInBody {
                                break;
                            }
                        }
                        None => {}
                    }
                }
                if matches!(fake.script, Script::Transcribe | Script::EndUtterance) {
                    let _ = tx
                        .send(Ok(final_result(seen.audio_bytes as i64 / 32)))
                        .await;
                }
                if let Ok(mut all) = fake.seen.lock() {
                    all.push(seen);
                }
                // Dropping `tx` ends the responses: the call ends with OK.
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

fn dur(ms: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: ms / 1_000,
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    })
}

fn interim(end_ms: i64) -> StreamingRecognizeResponse {
    StreamingRecognizeResponse {
        results: vec![StreamingRecognitionResult {
            alternatives: vec![SpeechRecognitionAlternative {
                transcript: "hel".into(),
                ..SpeechRecognitionAlternative::default()
            }],
            stability: 0.5,
            result_end_time: dur(end_ms),
            ..StreamingRecognitionResult::default()
        }],
        ..StreamingRecognizeResponse::default()
    }
}

fn final_result(end_ms: i64) -> StreamingRecognizeResponse {
    let word = |w: &str, s: i64, e: i64| WordInfo {
        start_time: dur(s),
        end_time: dur(e),
        word: w.into(),
        ..WordInfo::default()
    };
    StreamingRecognizeResponse {
        results: vec![StreamingRecognitionResult {
            alternatives: vec![SpeechRecognitionAlternative {
                transcript: "hello world".into(),
                confidence: 0.9,
                words: vec![word("hello", 100, 400), word("world", 500, end_ms - 50)],
            }],
            is_final: true,
            result_end_time: dur(end_ms),
            ..StreamingRecognitionResult::default()
        }],
        ..StreamingRecognizeResponse::default()
    }
}

fn body_error() -> StreamingRecognizeResponse {
    StreamingRecognizeResponse {
        error: Some(
            googleapis_tonic_google_cloud_speech_v1::google::rpc::Status {
                code: tonic::Code::OutOfRange as i32,
                message: "Exceeded maximum allowed stream duration of 305 seconds.".into(),
                details: Vec::new(),
            },
        ),
        ..StreamingRecognizeResponse::default()
    }
}

fn end_of_utterance() -> StreamingRecognizeResponse {
    StreamingRecognizeResponse {
        speech_event_type: SpeechEventType::EndOfSingleUtterance as i32,
        ..StreamingRecognizeResponse::default()
    }
}

/// A running fake service; stopped when dropped.
struct FakeServer {
    endpoint: String,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl FakeServer {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn fake_server(script: Script) -> FakeServer {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind loopback: {e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = FakeSpeech {
        script,
        seen: seen.clone(),
    };
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    FakeServer {
        endpoint: format!("http://127.0.0.1:{port}"),
        seen,
        shutdown: Some(shutdown),
    }
}

fn send_frames(handle: &StreamHandle, start_ms: u64, count: u64) {
    for i in 0..count {
        let ms = start_ms + i * 100;
        handle.audio.do_send(UpstreamAudio::Frame(AudioFrame {
            start_ms: ms,
            start_byte: ms * 32,
            data: Bytes::from(vec![1u8; 3_200]),
        }));
    }
}

/// A full call: configuration first, then the audio, authenticated; results come back on the
/// session clock (this stream started at 5 s); the half-close gets the final; then a clean end.
#[actix_rt::test]
async fn transcribes_on_the_session_clock() {
    let server = fake_server(Script::Transcribe).await;
    let tokens = crate::recognizer::google_auth::tests::provider(Some("test-token"), 3_600);
    let credentials = match Credentials::from_provider(tokens, None) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let settings = GoogleSettings {
        endpoint: server.endpoint.clone(),
        ..GoogleSettings::default()
    };
    let Ok(endpoint) = GoogleEndpoint::new(&settings) else {
        panic!("loopback endpoint is valid");
    };
    let f = GoogleRecognizerFactory::new(&endpoint, credentials);
    let (handle, log) = start(&f);
    send_frames(&handle, 5_000, 10);
    handle.audio.do_send(UpstreamAudio::End);
    let events = until_ended(&log, WAIT).await;
    assert_eq!(ended(&events), vec![Ok(())], "{events:?}");
    let got = transcripts(&events);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].is_final, got[0].start_ms, got[0].end_ms),
        (false, 5_000, 5_500)
    );
    assert_eq!(got[0].stability, 0.5);
    assert_eq!(
        (got[1].is_final, got[1].start_ms, got[1].end_ms),
        (true, 5_100, 6_000)
    );
    let words: Vec<(&str, u64, u64)> = got[1]
        .words
        .iter()
        .map(|w| (w.word.as_str(), w.start_ms, w.end_ms))
        .collect();
    assert_eq!(
        words,
        vec![("hello", 5_100, 5_400), ("world", 5_500, 5_950)]
    );
    assert!(events.iter().all(|e| e.stream_id == 7));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer test-token"));
    assert_eq!(seen[0].kinds.first(), Some(&true), "configuration first");
    assert_eq!(
        seen[0].kinds.iter().filter(|k| **k).count(),
        1,
        "one configuration"
    );
    assert_eq!(seen[0].audio_bytes, 32_000);
    let config = seen[0]
        .config
        .clone()
        .and_then(|c| c.config)
        .unwrap_or_default();
    assert_eq!(
        (config.sample_rate_hertz, config.language_code.as_str()),
        (16_000, "en-US")
    );
    assert!(
        handle.cancel.send(CancelStream).await.is_err(),
        "stopped after Ended"
    );
    assert_eq!(f.pool().streams(), 0);
}

/// A call Google refuses ends with its code and message.
#[actix_rt::test]
async fn refused_call_ends_with_googles_status() {
    let server = fake_server(Script::RejectCall).await;
    let f = factory(server.endpoint.clone());
    let (_handle, log) = start(&f);
    let events = log.wait_count::<RecognizerEvent>(1, WAIT).await;
    let ends = ended(&events);
    assert_eq!(
        ends,
        vec![Err(StreamFailure {
            code: tonic::Code::InvalidArgument,
            message: "Invalid recognition 'config': bad sample rate hertz.".into()
        })]
    );
}

/// An error in a response body ends the stream once, with that error.
#[actix_rt::test]
async fn error_in_a_response_ends_the_stream() {
    let server = fake_server(Script::ErrorInBody).await;
    let f = factory(server.endpoint.clone());
    let (handle, log) = start(&f);
    send_frames(&handle, 0, 3);
    let events = until_ended(&log, WAIT).await;
    let ends = ended(&events);
    assert_eq!(ends.len(), 1, "{events:?}");
    assert_eq!(
        ends[0].as_ref().err().map(|f| f.code),
        Some(tonic::Code::OutOfRange)
    );
    assert!(
        handle.cancel.send(CancelStream).await.is_err(),
        "stopped after Ended"
    );
    let kinds: Vec<bool> = log
        .all::<RecognizerEvent>()
        .iter()
        .map(|e| e.kind == RecognizerEventKind::Opened)
        .collect();
    assert_eq!(kinds, vec![true, false], "Opened, then the one Ended");
}

/// At the end of a single utterance the recognizer half-closes by itself and reports the
/// event, the remaining final, then a clean end.
#[actix_rt::test]
async fn end_of_single_utterance_half_closes() {
    let server = fake_server(Script::EndUtterance).await;
    let f = factory(server.endpoint.clone());
    let (handle, log) = start(&f);
    send_frames(&handle, 0, 3);
    let events = until_ended(&log, WAIT).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match &e.kind {
            RecognizerEventKind::Opened => "opened",
            RecognizerEventKind::Result(_) => "result",
            RecognizerEventKind::EndOfSingleUtterance => "end_of_utterance",
            RecognizerEventKind::Ended(Ok(())) => "ended_ok",
            RecognizerEventKind::Ended(Err(_)) => "ended_err",
            RecognizerEventKind::Busy(_) => "busy",
            RecognizerEventKind::VoiceActivity(_) => "voice_activity",
            RecognizerEventKind::Billed(_) => "billed",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["opened", "end_of_utterance", "result", "ended_ok"]
    );
    assert!(server.seen().first().is_some_and(|s| s.audio_bytes > 0));
}

/// The latency ring finds the frame that contains a final's end, and forgets older frames.
#[test]
fn frame_times_find_the_frame_of_a_final() {
    let t0 = Instant::now();
    let mut times = FrameTimes::default();
    for i in 1..=5u64 {
        times.record(i * 100, t0 + Duration::from_millis(i * 100));
    }
    assert_eq!(
        times.handed_over(250),
        Some(t0 + Duration::from_millis(300))
    );
    assert_eq!(
        times.handed_over(300),
        Some(t0 + Duration::from_millis(300))
    );
    assert_eq!(times.handed_over(501), None);
}
