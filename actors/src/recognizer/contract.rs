//! The recognizer contract, written once: what every recognizer actor (Google, local, …) owes the
//! stream supervisor, whatever its engine.
//!
//! - Events go to the supervisor tagged with the stream's id ([`StreamContract::report`]).
//! - A stream ends exactly once: one `Ended` (or `Busy`, when it never got an engine), after which
//!   nothing more is reported and the actor stops; a cancelled stream stops without either
//!   ([`StreamContract::end`], [`StreamContract::busy`], [`StreamContract::cancel`]).
//! - Times are on the session clock: the first frame a stream receives fixes its origin (an
//!   engine counts from the start of the audio *it* was given; after a restart with replay that
//!   is not the session's start), and a result without words starts where the stream's last
//!   final ended ([`StreamContract::origin_ms`], [`StreamContract::previous_final_end_ms`]).
//!
//! Each recognizer holds one [`StreamContract`] and keeps only its engine's own state beside it.

use actix::prelude::*;
use tracing::debug;

use crate::messages::{
    CancelStream, RecognizerEvent, RecognizerEventKind, StreamFailure, StreamHandle, StreamRequest,
    UpstreamAudio,
};
use crate::settings::grpc_code_name;

/// The handle the supervisor keeps for a started recognizer actor.
pub fn stream_handle<A>(addr: Addr<A>) -> StreamHandle
where
    A: Actor + Handler<UpstreamAudio> + Handler<CancelStream>,
    A::Context: actix::dev::ToEnvelope<A, UpstreamAudio> + actix::dev::ToEnvelope<A, CancelStream>,
{
    StreamHandle {
        audio: addr.clone().recipient(),
        cancel: addr.recipient(),
    }
}

/// One stream's side of the contract: its request, where its clock starts, its last final, and
/// whether it has ended. See the module doc.
pub struct StreamContract {
    /// The stream's id, session, configuration and where its events go.
    request: StreamRequest,
    /// Names the engine in logs (`"google"`, `"local"`).
    engine: &'static str,
    /// Session time of this stream's first frame: the origin of the engine's times.
    origin_ms: Option<u64>,
    /// End of this stream's last final result (session clock).
    last_final_end_ms: Option<u64>,
    /// `Ended` or `Busy` was reported, or the stream was cancelled: nothing more is reported.
    ended: bool,
}

impl StreamContract {
    pub fn new(request: StreamRequest, engine: &'static str) -> StreamContract {
        StreamContract {
            request,
            engine,
            origin_ms: None,
            last_final_end_ms: None,
            ended: false,
        }
    }

    /// What the supervisor asked for.
    pub fn request(&self) -> &StreamRequest {
        &self.request
    }

    /// Whether the stream is over for the supervisor (ended, busy or cancelled).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Sends one event to the supervisor.
    pub fn report(&self, kind: RecognizerEventKind) {
        self.request.events.do_send(RecognizerEvent {
            stream_id: self.request.stream_id,
            kind,
        });
    }

    /// Reports the end of the stream — the first time only — and stops the actor.
    pub fn end(&mut self, result: Result<(), StreamFailure>, ctx: &mut impl ActorContext) {
        if self.ended {
            return;
        }
        self.ended = true;
        let (session, stream, engine) = (
            &self.request.session_id,
            self.request.stream_id,
            self.engine,
        );
        match &result {
            Ok(()) => debug!(%session, stream, engine, "upstream stream ended"),
            Err(f) => debug!(
                %session,
                stream,
                engine,
                code = grpc_code_name(f.code),
                message = %f.message,
                "upstream stream failed"
            ),
        }
        self.report(RecognizerEventKind::Ended(result));
        ctx.stop();
    }

    /// No engine is free for this stream: reports `Busy` in place of `Ended`, and stops the actor.
    pub fn busy(&mut self, message: String, ctx: &mut impl ActorContext) {
        if self.ended {
            return;
        }
        self.ended = true;
        debug!(session = %self.request.session_id, stream = self.request.stream_id, engine = self.engine, "engine busy");
        self.report(RecognizerEventKind::Busy(message));
        ctx.stop();
    }

    /// The supervisor cancelled the stream: stops the actor without reporting anything.
    pub fn cancel(&mut self, ctx: &mut impl ActorContext) {
        self.ended = true;
        ctx.stop();
    }

    /// The origin of this stream's times, fixed by its first frame (`frame_start_ms`, session
    /// clock) and unchanged by later ones.
    pub fn origin_at(&mut self, frame_start_ms: u64) -> u64 {
        *self.origin_ms.get_or_insert(frame_start_ms)
    }

    /// The origin of this stream's times (0 before any frame).
    pub fn origin_ms(&self) -> u64 {
        self.origin_ms.unwrap_or(0)
    }

    /// Where a result without words starts: the end of this stream's last final, or its origin.
    pub fn previous_final_end_ms(&self) -> u64 {
        self.last_final_end_ms.unwrap_or_else(|| self.origin_ms())
    }

    /// A final result ending at `end_ms` (session clock) was received.
    pub fn final_ended_at(&mut self, end_ms: u64) {
        self.last_final_end_ms = Some(end_ms);
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::testing::{start_config, Probe, ProbeLog};

    /// A recognizer with no engine: each message plays one step of the contract.
    struct Bare(StreamContract);

    impl Actor for Bare {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    enum Step {
        End(Result<(), StreamFailure>),
        Busy,
        Cancel,
    }

    impl Handler<Step> for Bare {
        type Result = ();

        fn handle(&mut self, step: Step, ctx: &mut Context<Self>) {
            match step {
                Step::End(result) => self.0.end(result, ctx),
                Step::Busy => self.0.busy("all decoders busy".into(), ctx),
                Step::Cancel => self.0.cancel(ctx),
            }
        }
    }

    fn contract() -> (StreamContract, ProbeLog) {
        let (events, log) = Probe::start_new();
        let request = StreamRequest {
            stream_id: 9,
            session_id: Arc::from("s1"),
            config: Arc::new(start_config()),
            events: events.recipient(),
        };
        (StreamContract::new(request, "test"), log)
    }

    fn kinds(log: &ProbeLog) -> Vec<RecognizerEventKind> {
        log.all::<RecognizerEvent>()
            .into_iter()
            .map(|e| {
                assert_eq!(e.stream_id, 9, "every event names its stream");
                e.kind
            })
            .collect()
    }

    /// However many ends are asked for, the supervisor hears one `Ended` (the first), and the
    /// actor stops.
    #[actix_rt::test]
    async fn a_stream_ends_exactly_once() {
        let (contract, log) = contract();
        let actor = Bare(contract).start();
        actor.do_send(Step::End(Err(StreamFailure {
            code: tonic::Code::Internal,
            message: "first".into(),
        })));
        actor.do_send(Step::End(Ok(())));
        actor.do_send(Step::Busy);
        let events = log
            .wait_count::<RecognizerEvent>(2, Duration::from_millis(300))
            .await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            kinds(&log),
            vec![RecognizerEventKind::Ended(Err(StreamFailure {
                code: tonic::Code::Internal,
                message: "first".into(),
            }))]
        );
        assert!(actor.send(Step::Cancel).await.is_err(), "stopped");
    }

    /// `Busy` takes the place of `Ended`; a cancelled stream stops and reports nothing, not even
    /// when asked to end afterwards.
    #[actix_rt::test]
    async fn busy_is_the_end_and_cancel_is_silent() {
        let (busy, busy_log) = contract();
        let busy = Bare(busy).start();
        busy.do_send(Step::Busy);
        busy.do_send(Step::End(Ok(())));
        busy_log
            .wait_count::<RecognizerEvent>(2, Duration::from_millis(300))
            .await;
        assert_eq!(
            kinds(&busy_log),
            vec![RecognizerEventKind::Busy("all decoders busy".into())]
        );

        let (cancelled, log) = contract();
        let mut cancelled = cancelled;
        cancelled.cancel(&mut Context::<Bare>::new());
        cancelled.end(Ok(()), &mut Context::<Bare>::new());
        assert!(cancelled.is_ended());
        let events = log
            .wait_count::<RecognizerEvent>(1, Duration::from_millis(300))
            .await;
        assert!(events.is_empty(), "{events:?}");
    }

    /// The first frame fixes the origin; a result without words starts at the origin until a
    /// final has ended, then at that final's end.
    #[actix_rt::test]
    async fn the_clock_starts_at_the_first_frame() {
        let (mut contract, _log) = contract();
        assert_eq!(contract.origin_ms(), 0);
        assert_eq!(contract.origin_at(5_000), 5_000);
        assert_eq!(contract.origin_at(5_100), 5_000, "later frames keep it");
        assert_eq!(contract.origin_ms(), 5_000);
        assert_eq!(contract.previous_final_end_ms(), 5_000);
        contract.final_ended_at(6_200);
        assert_eq!(contract.previous_final_end_ms(), 6_200);
        assert_eq!(contract.origin_ms(), 5_000);
    }
}
