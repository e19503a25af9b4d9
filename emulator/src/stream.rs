//! One `StreamingRecognize` call, from its first request to its status: Google's rules applied in
//! order, the recogniser (synthetic, or the local engine: [`super::recognizer`]) fed with the
//! audio, its events sent back as Google's responses, and the stream's injected fault, if it drew
//! one.
//!
//! The call runs in its own task, so a slow client only slows its own stream. Timers (stream limit,
//! audio timeout, outage) race the next request; the first to fire ends the call. The same call
//! serves every API version: what differs (messages, statuses) is the stream's [`Wire`].

use std::future::pending;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::config::FaultKind;
use super::connection::ConnectionInfo;
use super::faults::{fault_status, PlannedFault};
use super::recognizer::StreamRecognizer;
use super::rules::{self, AcceptedConfig, Pacing};
use super::shared::Shared;
use super::stats::Stats;
use super::synth::Recognition;
use super::wire::{Incoming, Wire};

type Item<R> = Result<R, Status>;

/// Everything a stream is given when it is admitted.
#[derive(Debug)]
pub(crate) struct StreamContext {
    /// For logs.
    pub id: u64,
    /// The connection the stream arrived on (to cut it for a `drop` fault).
    pub connection: Option<ConnectionInfo>,
    /// The fault this stream drew, if faults are on.
    pub fault: Option<PlannedFault>,
    pub shared: Arc<Shared>,
    /// When the stream opened: the origin of the duration limit and of the pacing rule.
    pub opened: Instant,
}

/// Where responses go: straight to the client, or through a queue that holds each one back by the
/// configured response delay (keeping their order).
pub(crate) enum Outbox<R> {
    Direct(mpsc::Sender<Item<R>>),
    Delayed {
        delay: Duration,
        queue: mpsc::UnboundedSender<(Instant, Item<R>)>,
    },
}

/// The client no longer reads responses.
#[derive(Debug)]
struct ClientGone;

impl<R: Send + 'static> Outbox<R> {
    /// An outbox and the response stream tonic sends to the client.
    pub fn new(delay: Duration) -> (Outbox<R>, ReceiverStream<Item<R>>) {
        let (tx, rx) = mpsc::channel(32);
        if delay.is_zero() {
            return (Outbox::Direct(tx), ReceiverStream::new(rx));
        }
        let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Item<R>)>();
        tokio::spawn(async move {
            while let Some((due, item)) = queued.recv().await {
                tokio::time::sleep_until(due.into()).await;
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        (Outbox::Delayed { delay, queue }, ReceiverStream::new(rx))
    }

    async fn send(&self, item: Item<R>) -> Result<(), ClientGone> {
        match self {
            Outbox::Direct(tx) => tx.send(item).await.map_err(|_| ClientGone),
            Outbox::Delayed { delay, queue } => queue
                .send((Instant::now() + *delay, item))
                .map_err(|_| ClientGone),
        }
    }
}

/// How a call ended.
#[derive(Debug)]
enum Ending {
    /// Status OK (half-close, or the end of a single utterance).
    Completed,
    /// An error status: a broken rule, an injected fault, an outage, shutdown.
    Failed(Status),
    /// The connection was cut (`drop` fault): no status reaches the client.
    Cut,
    /// The client cancelled or reset the call, or stopped reading.
    ClientGone,
}

/// The recognition set up by the config request.
struct Recognizing<W> {
    config: AcceptedConfig,
    recognizer: StreamRecognizer,
    /// The version's per-stream response state.
    wire: W,
}

/// The next result the stream's recogniser produces on its own (never, before the config).
async fn next_result<W>(recognizing: &mut Option<Recognizing<W>>) -> Result<Recognition, Status> {
    match recognizing {
        Some(r) => r.recognizer.next().await,
        None => pending().await,
    }
}

/// The state of one call.
struct Call<'a, W: Wire> {
    context: &'a StreamContext,
    outbox: &'a Outbox<W::Response>,
    /// `None` until the config request.
    recognizing: Option<Recognizing<W>>,
    /// Audio bytes received so far.
    audio_bytes: u64,
    /// When audio last arrived (the stream's opening before any): the audio timeout runs from here.
    last_audio: Instant,
}

/// Runs one admitted call (counted as opened and active by the service) to its end and reports it.
pub(crate) async fn run<W: Wire>(
    context: StreamContext,
    requests: Streaming<W::Request>,
    outbox: Outbox<W::Response>,
) {
    let stats = &context.shared.stats;
    let connection = context.connection.as_ref().map(|c| c.id);
    tracing::debug!(stream = context.id, ?connection, fault = ?context.fault, "stream opened");
    let mut call = Call::<W> {
        context: &context,
        outbox: &outbox,
        recognizing: None,
        audio_bytes: 0,
        last_audio: context.opened,
    };
    let ending = call.serve(requests).await;
    let audio_secs = call
        .recognizing
        .as_ref()
        .map_or(0.0, |r| r.config.audio_secs(call.audio_bytes));
    tracing::debug!(
        stream = context.id,
        ?connection,
        audio_secs,
        ?ending,
        "stream ended"
    );
    match ending {
        Ending::Completed => Stats::add(&stats.streams_completed, 1),
        Ending::Failed(status) => {
            Stats::add(&stats.streams_failed, 1);
            let _ = outbox.send(Err(status)).await;
        }
        Ending::Cut => Stats::add(&stats.streams_failed, 1),
        Ending::ClientGone => Stats::add(&stats.streams_cancelled, 1),
    }
    stats.streams_active.fetch_sub(1, Ordering::Relaxed);
}

/// Completes at `deadline`, or never.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => pending().await,
    }
}

/// Completes when the connection is cut, or never.
async fn connection_cut(connection: Option<&ConnectionInfo>) {
    match connection {
        Some(connection) => connection.killed().await,
        None => pending().await,
    }
}

impl<W: Wire> Call<'_, W> {
    async fn serve(&mut self, mut requests: Streaming<W::Request>) -> Ending {
        let shared = &self.context.shared;
        let config = &shared.config;
        let opened = self.context.opened;
        let stream_deadline = opened + config.stream_limit;
        // A stream open when an outage begins fails then.
        let outage_start = config
            .outage
            .map(|outage| shared.started + outage.after)
            .filter(|start| *start > opened);
        loop {
            let audio_deadline = self.last_audio + config.audio_timeout;
            let message = tokio::select! {
                biased;
                () = shared.shutdown.cancelled() => {
                    return Ending::Failed(Status::unavailable(rules::UNAVAILABLE));
                }
                () = connection_cut(self.context.connection.as_ref()) => return Ending::Cut,
                () = tokio::time::sleep_until(stream_deadline.into()) => {
                    return Ending::Failed(W::stream_limit_status(config.stream_limit));
                }
                () = tokio::time::sleep_until(audio_deadline.into()) => {
                    return Ending::Failed(W::audio_timeout_status());
                }
                () = sleep_until_some(outage_start) => {
                    return Ending::Failed(Status::unavailable(rules::UNAVAILABLE));
                }
                result = next_result(&mut self.recognizing) => {
                    let ending = match result {
                        Ok(event) => self.send_events(vec![event]).await,
                        Err(status) => Some(Ending::Failed(status)),
                    };
                    match ending {
                        Some(ending) => return ending,
                        None => continue,
                    }
                }
                message = requests.message() => message,
            };
            let ending = match message {
                Ok(Some(request)) => self.on_request(request).await,
                Ok(None) => Some(self.on_half_close().await),
                Err(_) => Some(Ending::ClientGone),
            };
            if let Some(ending) = ending {
                return ending;
            }
        }
    }

    /// One request: the config first, audio after it, nothing else.
    async fn on_request(&mut self, request: W::Request) -> Option<Ending> {
        let configured = self.recognizing.is_some();
        match (
            W::incoming(request, configured, &self.context.shared.config),
            configured,
        ) {
            (Incoming::Config(Ok((config, wire))), false) => {
                match self.context.shared.recognizers.open(&config) {
                    Ok(recognizer) => {
                        self.recognizing = Some(Recognizing {
                            config,
                            recognizer,
                            wire,
                        });
                        None
                    }
                    Err(status) => Some(Ending::Failed(status)),
                }
            }
            (Incoming::Config(Err(status)), false) => Some(Ending::Failed(status)),
            (Incoming::Audio(_) | Incoming::Nothing, false) => Some(Ending::Failed(
                Status::invalid_argument(rules::MALORDERED_FIRST),
            )),
            (Incoming::Config(_) | Incoming::Nothing, true) => Some(Ending::Failed(
                Status::invalid_argument(rules::MALORDERED_LATER),
            )),
            (Incoming::Audio(audio), true) => self.on_audio(audio).await,
        }
    }

    async fn on_audio(&mut self, audio: bytes::Bytes) -> Option<Ending> {
        let shared = &self.context.shared;
        let limit = W::max_request_bytes(&shared.config);
        if audio.len() > limit {
            return Some(Ending::Failed(rules::oversize_status(limit, audio.len())));
        }
        // An empty request carries no audio: it neither counts nor keeps the stream alive.
        if audio.is_empty() {
            return None;
        }
        let now = Instant::now();
        self.last_audio = now;
        self.audio_bytes += audio.len() as u64;
        Stats::add(&shared.stats.audio_bytes, audio.len() as u64);
        let recognizing = self.recognizing.as_mut()?;
        let audio_secs = recognizing.config.audio_secs(self.audio_bytes);
        if let Some(fault) = self.context.fault {
            if audio_secs > fault.after_audio.as_secs_f64() {
                return Some(self.inject(fault));
            }
        }
        let pacing = Pacing {
            burst: shared.config.burst,
            realtime_factor: shared.config.realtime_factor,
        };
        if pacing.too_fast(
            audio_secs,
            now.saturating_duration_since(self.context.opened),
        ) {
            return Some(Ending::Failed(Status::out_of_range(rules::TOO_FAST)));
        }
        let events = recognizing.recognizer.push(&audio);
        if let Some(ending) = self.send_events(events).await {
            return Some(ending);
        }
        // As Google documents it, a voice-activity timeout closes the stream; with what status is
        // unconfirmed: the emulator ends it OK, as after a half-close (docs/emulator.md).
        let timed_out = self
            .recognizing
            .as_ref()
            .is_some_and(|r| r.wire.speech_timed_out(audio_secs));
        timed_out.then_some(Ending::Completed)
    }

    /// The client half-closed: the recogniser's last words become a final, then the call ends OK.
    async fn on_half_close(&mut self) -> Ending {
        let events = match self.recognizing.as_mut() {
            Some(r) => r.recognizer.finish().await,
            None => Ok(Vec::new()),
        };
        match events {
            Ok(events) => self.send_events(events).await.unwrap_or(Ending::Completed),
            Err(status) => Ending::Failed(status),
        }
    }

    /// Sends recognition events as responses; in single-utterance mode the first final ends the call
    /// (`END_OF_SINGLE_UTTERANCE`, the final, then OK).
    async fn send_events(&mut self, events: Vec<Recognition>) -> Option<Ending> {
        let recognizing = self.recognizing.as_mut()?;
        let config = &recognizing.config;
        for event in events {
            let single_utterance_end = config.single_utterance && event.is_final;
            let mut responses = Vec::new();
            if single_utterance_end {
                responses.push(W::end_of_single_utterance(event.end_sample, config));
            }
            responses.extend(recognizing.wire.responses(&event, config));
            for response in responses {
                if self.outbox.send(Ok(response)).await.is_err() {
                    return Some(Ending::ClientGone);
                }
            }
            if single_utterance_end {
                return Some(Ending::Completed);
            }
        }
        None
    }

    fn inject(&self, fault: PlannedFault) -> Ending {
        let stats = &self.context.shared.stats;
        Stats::add(&stats.faults_injected, 1);
        match (fault.kind, &self.context.connection) {
            (FaultKind::Status(code), _) => Ending::Failed(fault_status(code)),
            (FaultKind::Drop, Some(connection)) => {
                Stats::add(&stats.connections_cut, 1);
                connection.kill();
                Ending::Cut
            }
            // Not reached with the emulator's own listener, which always provides the connection.
            (FaultKind::Drop, None) => Ending::Failed(Status::unavailable(rules::UNAVAILABLE)),
        }
    }
}
