//! The gRPC service `google.cloud.speech.v1.Speech` and what every version's service shares:
//! [`admit`] admits or refuses each `StreamingRecognize` call (its access token first, with
//! `--require-auth`), then hands it to its own stream task
//! ([`super::stream`]) and returns the response stream. v1's messages are read and written by
//! [`V1`], its [`Wire`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    streaming_recognize_request::StreamingRequest, StreamingRecognizeRequest,
    StreamingRecognizeResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Response, Status, Streaming};

use super::config::EmulatorConfig;
use super::connection::ConnectionInfo;
use super::generated::v1::speech_server::Speech;
use super::responses;
use super::rules::{self, AcceptedConfig};
use super::shared::Shared;
use super::stats::Stats;
use super::stream::{self, Outbox, StreamContext};
use super::synth::Recognition;
use super::wire::{Incoming, Wire};

/// The `Speech` service: one instance per emulator, cloned by tonic per connection.
#[derive(Debug, Clone)]
pub(crate) struct SpeechService {
    pub shared: Arc<Shared>,
}

/// The response stream of a call of version `W`.
pub(crate) type Responses<W> = ReceiverStream<Result<<W as Wire>::Response, Status>>;

/// Admits one call of any version (or refuses it with `UNAVAILABLE`) and starts its stream task.
pub(crate) fn admit<W: Wire>(
    shared: &Arc<Shared>,
    request: Request<Streaming<W::Request>>,
) -> Result<Response<Responses<W>>, Status> {
    if let Some(tokens) = &shared.tokens {
        tokens.check(request.metadata())?;
    }
    let extensions = request.extensions();
    let connection = extensions.get::<ConnectionInfo>().cloned().or_else(|| {
        extensions
            .get::<TlsConnectInfo<ConnectionInfo>>()
            .map(|tls| tls.get_ref().clone())
    });
    if let Some(reason) = shared.refusal(Instant::now()) {
        Stats::add(&shared.stats.streams_refused, 1);
        tracing::debug!(reason, "stream refused");
        return Err(Status::unavailable(rules::UNAVAILABLE));
    }
    Stats::add(&shared.stats.streams_opened, 1);
    Stats::add(&shared.stats.streams_active, 1);
    let context = StreamContext {
        id: shared.next_stream_id.fetch_add(1, Ordering::Relaxed),
        connection,
        fault: shared.next_fault(),
        shared: Arc::clone(shared),
        opened: Instant::now(),
    };
    let (outbox, responses) = Outbox::new(shared.config.response_delay);
    tokio::spawn(stream::run::<W>(context, request.into_inner(), outbox));
    Ok(Response::new(responses))
}

#[tonic::async_trait]
impl Speech for SpeechService {
    type StreamingRecognizeStream = Responses<V1>;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<StreamingRecognizeRequest>>,
    ) -> Result<Response<Self::StreamingRecognizeStream>, Status> {
        admit::<V1>(&self.shared, request)
    }
}

/// v1's messages and statuses (no per-stream state: v1 has no events beyond results).
pub(crate) struct V1;

impl Wire for V1 {
    type Request = StreamingRecognizeRequest;
    type Response = StreamingRecognizeResponse;

    fn incoming(request: Self::Request, _configured: bool, _: &EmulatorConfig) -> Incoming<V1> {
        match request.streaming_request {
            Some(StreamingRequest::StreamingConfig(streaming)) => {
                Incoming::Config(rules::accept_config(&streaming).map(|config| (config, V1)))
            }
            Some(StreamingRequest::AudioContent(audio)) => Incoming::Audio(audio),
            None => Incoming::Nothing,
        }
    }

    fn responses(&mut self, event: &Recognition, config: &AcceptedConfig) -> Vec<Self::Response> {
        vec![responses::result_response(event, config)]
    }

    fn end_of_single_utterance(at_sample: u64, config: &AcceptedConfig) -> Self::Response {
        responses::end_of_single_utterance(at_sample, config.sample_rate_hz)
    }

    fn stream_limit_status(limit: Duration) -> Status {
        rules::stream_limit_status(limit)
    }

    fn audio_timeout_status() -> Status {
        Status::out_of_range(rules::AUDIO_TIMEOUT)
    }

    fn max_request_bytes(config: &EmulatorConfig) -> usize {
        config.max_request_bytes
    }
}
