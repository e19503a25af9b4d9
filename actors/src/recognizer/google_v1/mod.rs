//! The Google Speech-to-Text v1 recognizer: one actor per upstream `StreamingRecognize` call, and
//! the factory that starts them.
//!
//! Layout:
//! - this file: [`GoogleRecognizer`] (the actor) and [`GoogleRecognizerFactory`].
//! - [`convert`]: configuration, results and errors between voxgate's types and Google v1's.
//! - [`speech_api`]: what differs between API versions ([`SpeechApi`]; [`V1`] here, v2 in
//!   `super::google_v2`): the actor and the factory are generic over it.
//! - [`pool`]: the per-worker-thread pool of HTTP/2 connections to Google, whose sockets
//!   ([`coalesce`]) gather the audio of a connection's streams into fewer writes.
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

pub mod coalesce;
pub mod convert;
pub mod pool;
pub mod speech_api;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use convert::failure_from_status;
use pool::{ChannelLease, ConnectionPool, GoogleEndpoint};
pub use speech_api::{ApiEvent, SpeechApi, StreamClock, V1};

use super::contract::{stream_handle, StreamContract};
use super::google_auth::Credentials;
use super::RecognizerFactory;
use crate::messages::*;
use crate::metrics::METRICS;
use crate::protocol::Honoured;

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

/// Google's protobuf codec with [`CODEC_BUFFER_BYTES`] buffers (the generated `SpeechClient` always
/// uses tonic's defaults, so the call is made with `tonic::client::Grpc` directly).
struct SpeechCodec<A>(PhantomData<fn() -> A>);

impl<A: SpeechApi> tonic::codec::Codec for SpeechCodec<A> {
    type Encode = A::Request;
    type Decode = A::Response;
    type Encoder = tonic_prost::ProstEncoder<A::Request>;
    type Decoder = tonic_prost::ProstDecoder<A::Response>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(Self::buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(Self::buffers())
    }
}

impl<A> SpeechCodec<A> {
    fn buffers() -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(CODEC_BUFFER_BYTES, CODEC_YIELD_BYTES)
    }
}

/// Starts [`GoogleRecognizer`]s of API version `A`. One per worker thread: it owns that thread's
/// connection pool.
pub struct GoogleRecognizerFactory<A = V1> {
    pool: Rc<ConnectionPool>,
    credentials: Credentials,
    api: Rc<A>,
}

impl GoogleRecognizerFactory<V1> {
    /// A v1 factory for the endpoint of `settings`, authenticating with `credentials` (looked up
    /// once at service start and shared by every worker). Connects nothing until the first stream.
    pub fn new(endpoint: &GoogleEndpoint, credentials: Credentials) -> GoogleRecognizerFactory {
        GoogleRecognizerFactory::with_api(endpoint, credentials, V1)
    }
}

impl<A: SpeechApi> GoogleRecognizerFactory<A> {
    /// A factory calling API version `api` (as [`GoogleRecognizerFactory::new`] does v1).
    pub fn with_api(endpoint: &GoogleEndpoint, credentials: Credentials, api: A) -> Self {
        GoogleRecognizerFactory {
            pool: Rc::new(ConnectionPool::new(endpoint)),
            credentials,
            api: Rc::new(api),
        }
    }

    /// This worker's connection pool (for tests and diagnostics).
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }
}

impl<A: SpeechApi> RecognizerFactory for GoogleRecognizerFactory<A> {
    fn honoured(&self) -> Honoured {
        A::HONOURED
    }

    fn start(&self, request: StreamRequest) -> StreamHandle {
        let recognizer = GoogleRecognizer::with_api(
            request,
            self.pool.lease(),
            self.credentials.clone(),
            Rc::clone(&self.api),
        );
        stream_handle(recognizer.start())
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

/// The recognizer actor for one Google stream of API version `A`. See the module doc.
pub struct GoogleRecognizer<A = V1> {
    /// The request, the clock origin, the last final, whether it ended: the part every
    /// recognizer shares.
    contract: StreamContract,
    /// The connection slot; returned when the actor stops.
    lease: Option<ChannelLease>,
    credentials: Credentials,
    /// Audio for the call (the configuration request goes first by itself); `None` once
    /// half-closed (or never opened).
    requests: Option<mpsc::Sender<Bytes>>,
    frame_times: FrameTimes,
    api: Rc<A>,
    /// The stream's billed audio reported so far (Google v2 reports it cumulatively).
    billed_ms: u64,
}

impl GoogleRecognizer<V1> {
    pub fn new(request: StreamRequest, lease: ChannelLease, credentials: Credentials) -> Self {
        GoogleRecognizer::with_api(request, lease, credentials, Rc::new(V1))
    }
}

impl<A: SpeechApi> GoogleRecognizer<A> {
    pub fn with_api(
        request: StreamRequest,
        lease: ChannelLease,
        credentials: Credentials,
        api: Rc<A>,
    ) -> Self {
        GoogleRecognizer {
            contract: StreamContract::new(request, "google"),
            lease: Some(lease),
            credentials,
            requests: None,
            frame_times: FrameTimes::default(),
            api,
            billed_ms: 0,
        }
    }

    /// Voice activity goes to the supervisor only when the session asked for it (Google sends
    /// none otherwise; this keeps a recognizer that does from reaching the client unasked).
    fn report_voice_activity(&self, activity: SpeechActivity, at_ms: u64) {
        if self
            .contract
            .request()
            .config
            .features
            .voice_activity_events
        {
            self.contract
                .report(RecognizerEventKind::VoiceActivity(VoiceActivity {
                    activity,
                    at_ms,
                }));
        }
    }

    fn on_response(&mut self, response: A::Response, ctx: &mut Context<Self>) {
        let clock = StreamClock {
            origin_ms: self.contract.origin_ms(),
            previous_final_end_ms: self.contract.previous_final_end_ms(),
            language: self.contract.request().config.language_code.as_str(),
        };
        for event in self.api.events(response, clock) {
            match event {
                ApiEvent::Result(transcript) => {
                    if transcript.is_final {
                        self.contract.final_ended_at(transcript.end_ms);
                        if let Some(at) = self.frame_times.handed_over(transcript.end_ms) {
                            METRICS
                                .transcript_latency
                                .observe(at.elapsed().as_secs_f64());
                        }
                    }
                    self.contract
                        .report(RecognizerEventKind::Result(transcript));
                }
                ApiEvent::EndOfSingleUtterance => {
                    // Google listens no more: half-close and wait for the remaining results.
                    self.requests = None;
                    self.contract
                        .report(RecognizerEventKind::EndOfSingleUtterance);
                }
                ApiEvent::BilledMs(total) => {
                    // Cumulative per stream: the increase is what this response adds.
                    let added = total.saturating_sub(self.billed_ms);
                    self.billed_ms = self.billed_ms.max(total);
                    if added > 0 {
                        METRICS.billed_audio_seconds.inc_by(added as f64 / 1_000.0);
                        self.contract.report(RecognizerEventKind::Billed(added));
                    }
                }
                ApiEvent::SpeechStarted(at_ms) => {
                    self.report_voice_activity(SpeechActivity::Started, at_ms)
                }
                ApiEvent::SpeechEnded(at_ms) => {
                    self.report_voice_activity(SpeechActivity::Ended, at_ms)
                }
                ApiEvent::Failed(failure) => self.contract.end(Err(failure), ctx),
            }
        }
    }
}

impl<A: SpeechApi> Actor for GoogleRecognizer<A> {
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
        let api = Rc::clone(&self.api);
        let config = api.config_request(&self.contract.request().config);
        let call = async move {
            // The configuration first, then each frame as tonic takes it.
            let requests = futures_util::stream::iter([config])
                .chain(ReceiverStream::new(receiver).map(A::audio_request));
            let mut request = tonic::Request::new(requests);
            api.add_metadata(&mut request);
            credentials.authorize(&mut request).await?;
            let mut grpc = tonic::client::Grpc::new(channel);
            // As the generated client reports it.
            grpc.ready().await.map_err(|e| {
                failure_from_status(&tonic::Status::unknown(format!(
                    "Service was not ready: {e}"
                )))
            })?;
            let path = http::uri::PathAndQuery::from_static(A::PATH);
            grpc.streaming(request, path, SpeechCodec::<A>(PhantomData))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| failure_from_status(&status))
        };
        ctx.spawn(call.into_actor(self).map(|opened, act, ctx| match opened {
            Ok(responses) => {
                if !act.contract.is_ended() {
                    act.contract.report(RecognizerEventKind::Opened);
                    ctx.add_stream(responses);
                }
            }
            Err(failure) => act.contract.end(Err(failure), ctx),
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        METRICS.streams_active.dec();
        self.requests = None;
        self.lease = None;
    }
}

impl<A: SpeechApi> Handler<UpstreamAudio> for GoogleRecognizer<A> {
    type Result = ();

    fn handle(&mut self, msg: UpstreamAudio, ctx: &mut Context<Self>) {
        match msg {
            UpstreamAudio::Frame(frame) => {
                if self.contract.is_ended() {
                    return;
                }
                let Some(requests) = &self.requests else {
                    return; // half-closed: Google takes no more audio
                };
                let origin = self.contract.origin_at(frame.start_ms);
                let end_ms = self
                    .contract
                    .request()
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
                        self.contract.end(Err(failure), ctx);
                    }
                    // The call is over; its end is reported from the response side.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            UpstreamAudio::End => self.requests = None,
        }
    }
}

impl<A: SpeechApi> Handler<CancelStream> for GoogleRecognizer<A> {
    type Result = ();

    fn handle(&mut self, _: CancelStream, ctx: &mut Context<Self>) {
        self.contract.cancel(ctx);
    }
}

impl<A: SpeechApi> StreamHandler<Result<A::Response, tonic::Status>> for GoogleRecognizer<A> {
    fn handle(&mut self, item: Result<A::Response, tonic::Status>, ctx: &mut Context<Self>) {
        if self.contract.is_ended() {
            return;
        }
        match item {
            Ok(response) => self.on_response(response, ctx),
            Err(status) => self.contract.end(Err(failure_from_status(&status)), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.contract.end(Ok(()), ctx);
    }
}

#[cfg(test)]
mod tests;
