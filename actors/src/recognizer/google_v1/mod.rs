//! The Google Speech-to-Text v1 recognizer: one actor per upstream `StreamingRecognize` call, and
//! the factory that starts them.
//!
//! Layout:
//! - this file: [`GoogleRecognizer`] (the actor) and [`GoogleRecognizerFactory`].
//! - [`convert`]: configuration, results and errors between voxgate's types and Google v1's.
//! - [`pool`]: the per-worker-thread pool of HTTP/2 connections to Google.
//! - credentials come from [`super::google_auth`], shared with the engines of other API versions.
//!
//! On start it takes a connection from the worker thread's [`ConnectionPool`], authenticates the
//! call ([`Credentials`]) and opens it with the session's configuration as the first request.
//! Audio frames from the buffer go into a bounded queue that tonic drains into the call (the queue
//! holds the frames' shared bytes; each becomes a request only as tonic takes it, so an idle
//! stream's queue costs a few hundred bytes, not 32 slots of Google's large request type);
//! [`UpstreamAudio::End`] closes the queue, which half-closes the call. If the queue is full the
//! upstream is not reading: the stream fails at once (`UNAVAILABLE`) rather than block the actor or
//! drop audio — the supervisor restarts it with a replay.
//!
//! Responses are turned into [`RecognizerEvent`]s on the session clock (see
//! [`convert`]). The actor reports exactly one `Ended` — `Ok` when Google ends the
//! call cleanly, `Err` with the status otherwise — and stops; on [`CancelStream`] it stops without
//! one (dropping the call resets the HTTP/2 stream).

pub mod convert;
pub mod pool;

use std::collections::VecDeque;
use std::rc::Rc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt as _;
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    StreamingRecognizeRequest, StreamingRecognizeResponse,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use convert::{
    audio_request, config_request, failure_from_response, failure_from_status,
    is_end_of_single_utterance, transcript_from_result,
};
use pool::{ChannelLease, ConnectionPool, GoogleEndpoint};

use super::google_auth::Credentials;
use super::RecognizerFactory;
use crate::messages::*;
use crate::metrics::METRICS;
use crate::settings::grpc_code_name;

/// Requests that may wait for the call to take them: enough for the audio buffer's lead plus a
/// slow connection set-up (with 100 ms frames, about 25 s of audio). Beyond it the upstream is
/// not reading and the stream fails.
pub const REQUEST_QUEUE_LEN: usize = 256;

/// How many recent frames are remembered for the latency metric.
const FRAME_TIMES_LEN: usize = 512;

/// Initial size of a call's encode and decode buffers. tonic's default (8 KiB each) is meant for
/// large messages; ours are a 100 ms audio frame up and a transcript down, and with thousands of
/// calls open the defaults cost 16 KiB per call before any audio (measured with heaptrack, see
/// docs/benchmarks.md). The buffers still grow when a message needs it.
const CODEC_BUFFER_BYTES: usize = 1024;
/// tonic's default: how much encoded data a call yields after.
const CODEC_YIELD_BYTES: usize = 32 * 1024;

/// The path of Google's streaming method.
const STREAMING_RECOGNIZE: &str = "/google.cloud.speech.v1.Speech/StreamingRecognize";

/// Google's protobuf codec with [`CODEC_BUFFER_BYTES`] buffers (the generated `SpeechClient` always
/// uses tonic's defaults, so the call is made with `tonic::client::Grpc` directly).
#[derive(Debug, Clone, Copy, Default)]
struct SpeechCodec;

impl tonic::codec::Codec for SpeechCodec {
    type Encode = StreamingRecognizeRequest;
    type Decode = StreamingRecognizeResponse;
    type Encoder = tonic_prost::ProstEncoder<StreamingRecognizeRequest>;
    type Decoder = tonic_prost::ProstDecoder<StreamingRecognizeResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(Self::buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(Self::buffers())
    }
}

impl SpeechCodec {
    fn buffers() -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(CODEC_BUFFER_BYTES, CODEC_YIELD_BYTES)
    }
}

/// Starts [`GoogleRecognizer`]s. One per worker thread: it owns that thread's connection pool.
pub struct GoogleRecognizerFactory {
    pool: Rc<ConnectionPool>,
    credentials: Credentials,
}

impl GoogleRecognizerFactory {
    /// A factory for the endpoint of `settings`, authenticating with `credentials` (looked up
    /// once at service start and shared by every worker). Connects nothing until the first stream.
    pub fn new(endpoint: &GoogleEndpoint, credentials: Credentials) -> GoogleRecognizerFactory {
        GoogleRecognizerFactory {
            pool: Rc::new(ConnectionPool::new(endpoint)),
            credentials,
        }
    }

    /// This worker's connection pool (for tests and diagnostics).
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }
}

impl RecognizerFactory for GoogleRecognizerFactory {
    fn start(&self, request: StreamRequest) -> StreamHandle {
        let recognizer =
            GoogleRecognizer::new(request, self.pool.lease(), self.credentials.clone());
        let addr = recognizer.start();
        StreamHandle {
            audio: addr.clone().recipient(),
            cancel: addr.recipient(),
        }
    }

    fn refresh_credentials(&self) {
        self.credentials.invalidate();
    }
}

/// When recent frames were handed to the call: (end of the frame on the session clock, instant).
#[derive(Default)]
struct FrameTimes {
    recent: VecDeque<(u64, Instant)>,
}

impl FrameTimes {
    fn record(&mut self, end_ms: u64, at: Instant) {
        if self.recent.len() == FRAME_TIMES_LEN {
            self.recent.pop_front();
        }
        self.recent.push_back((end_ms, at));
    }

    /// When the frame containing `end_ms` was handed over; older frames are forgotten (a final
    /// result covers them).
    fn handed_over(&mut self, end_ms: u64) -> Option<Instant> {
        while self.recent.front().is_some_and(|(end, _)| *end < end_ms) {
            self.recent.pop_front();
        }
        self.recent.front().map(|(_, at)| *at)
    }
}

/// The recognizer actor for one Google stream. See the module doc.
pub struct GoogleRecognizer {
    request: StreamRequest,
    /// The connection slot; returned when the actor stops.
    lease: Option<ChannelLease>,
    credentials: Credentials,
    /// Audio for the call (the configuration request goes first by itself); `None` once
    /// half-closed (or never opened).
    requests: Option<mpsc::Sender<Bytes>>,
    /// Session time of this stream's first frame: the origin of Google's times.
    origin_ms: Option<u64>,
    /// End of this stream's last final result (session clock).
    last_final_end_ms: Option<u64>,
    frame_times: FrameTimes,
    /// `Ended` was sent or the stream was cancelled: nothing more is reported.
    ended: bool,
}

impl GoogleRecognizer {
    pub fn new(request: StreamRequest, lease: ChannelLease, credentials: Credentials) -> Self {
        GoogleRecognizer {
            request,
            lease: Some(lease),
            credentials,
            requests: None,
            origin_ms: None,
            last_final_end_ms: None,
            frame_times: FrameTimes::default(),
            ended: false,
        }
    }

    fn report(&self, kind: RecognizerEventKind) {
        self.request.events.do_send(RecognizerEvent {
            stream_id: self.request.stream_id,
            kind,
        });
    }

    /// Reports the end of the stream (once) and stops.
    fn end(&mut self, result: Result<(), StreamFailure>, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &result {
            Ok(()) => {
                debug!(session = %self.request.session_id, stream = self.request.stream_id, "upstream stream ended")
            }
            Err(f) => debug!(
                session = %self.request.session_id,
                stream = self.request.stream_id,
                code = grpc_code_name(f.code),
                message = %f.message,
                "upstream stream failed"
            ),
        }
        self.report(RecognizerEventKind::Ended(result));
        ctx.stop();
    }

    fn on_response(&mut self, response: StreamingRecognizeResponse, ctx: &mut Context<Self>) {
        let origin = self.origin_ms.unwrap_or(0);
        let language = self.request.config.language_code.as_str();
        for result in &response.results {
            let previous = self.last_final_end_ms.unwrap_or(origin);
            let transcript = transcript_from_result(result, origin, previous, language);
            if transcript.is_final {
                self.last_final_end_ms = Some(transcript.end_ms);
                if let Some(at) = self.frame_times.handed_over(transcript.end_ms) {
                    METRICS
                        .transcript_latency
                        .observe(at.elapsed().as_secs_f64());
                }
            }
            self.report(RecognizerEventKind::Result(transcript));
        }
        if is_end_of_single_utterance(&response) {
            // Google listens no more: half-close and wait for the remaining results.
            self.requests = None;
            self.report(RecognizerEventKind::EndOfSingleUtterance);
        }
        if let Some(failure) = failure_from_response(&response) {
            self.end(Err(failure), ctx);
        }
    }
}

impl Actor for GoogleRecognizer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        METRICS.streams_total.inc();
        METRICS.streams_active.inc();
        let (sender, receiver) = mpsc::channel::<Bytes>(REQUEST_QUEUE_LEN);
        self.requests = Some(sender);
        let Some(channel) = self.lease.as_ref().map(ChannelLease::channel) else {
            return;
        };
        let credentials = self.credentials.clone();
        let config = config_request(&self.request.config);
        let call = async move {
            // The configuration first, then each frame as tonic takes it.
            let requests = futures_util::stream::iter([config])
                .chain(ReceiverStream::new(receiver).map(|audio: Bytes| audio_request(&audio)));
            let mut request = tonic::Request::new(requests);
            credentials.authorize(&mut request).await?;
            let mut grpc = tonic::client::Grpc::new(channel);
            // As the generated client reports it.
            grpc.ready().await.map_err(|e| {
                failure_from_status(&tonic::Status::unknown(format!(
                    "Service was not ready: {e}"
                )))
            })?;
            let path = http::uri::PathAndQuery::from_static(STREAMING_RECOGNIZE);
            grpc.streaming(request, path, SpeechCodec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| failure_from_status(&status))
        };
        ctx.spawn(call.into_actor(self).map(|opened, act, ctx| match opened {
            Ok(responses) => {
                if !act.ended {
                    act.report(RecognizerEventKind::Opened);
                    ctx.add_stream(responses);
                }
            }
            Err(failure) => act.end(Err(failure), ctx),
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        METRICS.streams_active.dec();
        self.requests = None;
        self.lease = None;
    }
}

impl Handler<UpstreamAudio> for GoogleRecognizer {
    type Result = ();

    fn handle(&mut self, msg: UpstreamAudio, ctx: &mut Context<Self>) {
        match msg {
            UpstreamAudio::Frame(frame) => {
                if self.ended {
                    return;
                }
                let Some(requests) = &self.requests else {
                    return; // half-closed: Google takes no more audio
                };
                let origin = *self.origin_ms.get_or_insert(frame.start_ms);
                let end_ms = self
                    .request
                    .config
                    .format
                    .bytes_to_ms(frame.start_byte + frame.data.len() as u64)
                    .max(origin);
                match requests.try_send(frame.data) {
                    Ok(()) => self.frame_times.record(end_ms, Instant::now()),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let failure = StreamFailure {
                            code: tonic::Code::Unavailable,
                            message: format!(
                                "upstream not reading: {REQUEST_QUEUE_LEN} requests waiting"
                            ),
                        };
                        self.end(Err(failure), ctx);
                    }
                    // The call is over; its end is reported from the response side.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            UpstreamAudio::End => self.requests = None,
        }
    }
}

impl Handler<CancelStream> for GoogleRecognizer {
    type Result = ();

    fn handle(&mut self, _: CancelStream, ctx: &mut Context<Self>) {
        self.ended = true;
        ctx.stop();
    }
}

impl StreamHandler<Result<StreamingRecognizeResponse, tonic::Status>> for GoogleRecognizer {
    fn handle(
        &mut self,
        item: Result<StreamingRecognizeResponse, tonic::Status>,
        ctx: &mut Context<Self>,
    ) {
        if self.ended {
            return;
        }
        match item {
            Ok(response) => self.on_response(response, ctx),
            Err(status) => self.end(Err(failure_from_status(&status)), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.end(Ok(()), ctx);
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::GoogleSettings;
    use std::sync::Arc;
    use std::time::Duration;

    use std::task::Poll;

    use bytes::Bytes;
    use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
        streaming_recognize_request::StreamingRequest,
        streaming_recognize_response::SpeechEventType, SpeechRecognitionAlternative,
        StreamingRecognitionConfig, StreamingRecognitionResult, WordInfo,
    };
    use tonic::codegen::{BoxFuture, Service};

    use super::*;
    use crate::protocol::StartConfig;
    use crate::settings::GoogleAuth;
    use crate::testing::{Probe, ProbeLog};

    const WAIT: Duration = Duration::from_secs(10);

    fn start_config() -> Arc<StartConfig> {
        Arc::new(crate::testing::start_config())
    }

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
        let (events, log) = Probe::start_new();
        let handle = factory.start(StreamRequest {
            stream_id: 7,
            session_id: Arc::from("s1"),
            config: start_config(),
            events: events.recipient(),
        });
        (handle, log)
    }

    fn ended(events: &[RecognizerEvent]) -> Vec<Result<(), StreamFailure>> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                RecognizerEventKind::Ended(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// A loopback port with nothing listening.
    fn closed_port() -> u16 {
        match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot bind loopback: {e}"),
        }
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
            log.wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
                .await;
            assert_eq!(calls(), expected_calls, "cached token reused");
        }
        f.refresh_credentials();
        let (_handle, log) = start(&f);
        log.wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
            .await;
        assert_eq!(calls(), 2, "a fresh token after refresh_credentials");
    }

    /// A peer that accepts connections but never speaks HTTP/2: audio piles up in the queue and
    /// the stream fails as "upstream not reading" instead of blocking or dropping audio.
    #[actix_rt::test]
    async fn upstream_not_reading_fails_the_stream() {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind loopback: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let silent_peer = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
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
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind loopback: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let silent_peer = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
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

    fn transcripts(events: &[RecognizerEvent]) -> Vec<Transcript> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                RecognizerEventKind::Result(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
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
        let events = log
            .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
            .await;
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
        let events = log
            .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
            .await;
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
        let events = log
            .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
            .await;
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match &e.kind {
                RecognizerEventKind::Opened => "opened",
                RecognizerEventKind::Result(_) => "result",
                RecognizerEventKind::EndOfSingleUtterance => "end_of_utterance",
                RecognizerEventKind::Ended(Ok(())) => "ended_ok",
                RecognizerEventKind::Ended(Err(_)) => "ended_err",
                RecognizerEventKind::Busy(_) => "busy",
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
}
