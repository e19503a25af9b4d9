//! The gRPC service `google.cloud.speech.v1.Speech`: admits or refuses each `StreamingRecognize`
//! call (its access token first, with `--require-auth`), then hands it to its own stream task ([`super::stream`]) and returns the response stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    StreamingRecognizeRequest, StreamingRecognizeResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Response, Status, Streaming};

use super::connection::ConnectionInfo;
use super::generated::speech_server::Speech;
use super::rules;
use super::shared::Shared;
use super::stats::Stats;
use super::stream::{self, Outbox, StreamContext};

/// The `Speech` service: one instance per emulator, cloned by tonic per connection.
#[derive(Debug, Clone)]
pub(crate) struct SpeechService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Speech for SpeechService {
    type StreamingRecognizeStream = ReceiverStream<Result<StreamingRecognizeResponse, Status>>;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<StreamingRecognizeRequest>>,
    ) -> Result<Response<Self::StreamingRecognizeStream>, Status> {
        let shared = &self.shared;
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
        tokio::spawn(stream::run(context, request.into_inner(), outbox));
        Ok(Response::new(responses))
    }
}
