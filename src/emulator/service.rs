//! The gRPC service `google.cloud.speech.v1.Speech`: admits or refuses each `StreamingRecognize`
//! call, then hands it to its own stream task ([`super::stream`]) and returns the response stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    StreamingRecognizeRequest, StreamingRecognizeResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::config::EmulatorConfig;
use super::connection::ConnectionInfo;
use super::faults::{FaultSchedule, PlannedFault};
use super::generated::speech_server::Speech;
use super::recognizer::Recognizers;
use super::rules;
use super::stats::Stats;
use super::stream::{self, Outbox, StreamContext};

/// What every stream of one emulator shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    /// When the emulator started: the origin of `refuse_streams_for` and of the outage window.
    pub started: Instant,
    pub stats: Stats,
    pub faults: Mutex<FaultSchedule>,
    /// Cancelled at shutdown: open streams end with `UNAVAILABLE`.
    pub shutdown: CancellationToken,
    /// Numbers streams for logs.
    pub next_stream_id: AtomicU64,
    /// What each stream recognises with.
    pub recognizers: Recognizers,
}

impl Shared {
    pub fn new(
        config: EmulatorConfig,
        shutdown: CancellationToken,
        recognizers: Recognizers,
    ) -> Shared {
        Shared {
            faults: Mutex::new(FaultSchedule::new(&config.faults)),
            config,
            started: Instant::now(),
            stats: Stats::default(),
            shutdown,
            next_stream_id: AtomicU64::new(1),
            recognizers,
        }
    }

    /// Why a stream opening now is refused, if it is: shutting down, the refusal window after the
    /// start, or an outage.
    fn refusal(&self, now: Instant) -> Option<&'static str> {
        let since_start = now.saturating_duration_since(self.started);
        if self.shutdown.is_cancelled() {
            return Some("shutting down");
        }
        if since_start < self.config.refuse_streams_for {
            return Some("refusing streams after start");
        }
        if let Some(outage) = self.config.outage {
            if since_start >= outage.after && since_start < outage.after + outage.duration {
                return Some("outage");
            }
        }
        None
    }

    fn next_fault(&self) -> Option<PlannedFault> {
        match self.faults.lock() {
            Ok(mut schedule) => schedule.next_fault(),
            // A panic elsewhere poisoned the lock; the schedule itself is still usable.
            Err(poisoned) => poisoned.into_inner().next_fault(),
        }
    }
}

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
        let connection = request.extensions().get::<ConnectionInfo>().cloned();
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
