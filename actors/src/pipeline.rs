//! How a session gets its pipeline (audio buffer + stream supervisor + recognizers).
//!
//! The session only knows this trait and the [`PipelineHandle`] it returns, so a test can start a
//! session whose pipeline is a probe. [`Pipeline`] is the real one.

use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;

use crate::audio_buffer::AudioBuffer;
use crate::circuit_breaker::CircuitBreaker;
use crate::messages::{AudioBufferLinks, BufferControl, PipelineHandle, SessionLinks};
use crate::protocol::{Honoured, StartConfig};
use crate::recognizer::RecognizerFactory;
use crate::restart_policy::RestartPolicy;
use crate::settings::{AudioSettings, SupervisionSettings};
use crate::supervisor::StreamSupervisor;

/// Starts the actors that carry one session's audio upstream and its results back. Called on the
/// session's arbiter when the session is configured; everything it starts lives there too.
pub trait PipelineFactory {
    /// What the pipeline's upstream honours of the features a session may ask for.
    fn honoured(&self) -> Honoured;

    fn start(
        &self,
        session_id: Arc<str>,
        config: Arc<StartConfig>,
        links: SessionLinks,
    ) -> PipelineHandle;
}

/// The real pipeline: an [`AudioBuffer`] and a [`StreamSupervisor`] per session, recognizers from
/// `recognizers` (Google's in the service). One per worker thread; `start` runs on the session's
/// arbiter.
pub struct Pipeline {
    /// Starts one recognizer per upstream stream.
    pub recognizers: Rc<dyn RecognizerFactory>,
    /// Re-chunking, pacing and bounds of the audio buffer (the frame length is the session's
    /// own when its dialect chose one).
    pub audio: AudioSettings,
    /// The restart policy of upstream streams.
    pub supervision: SupervisionSettings,
    /// The circuit breaker shared by every session of the process (every worker thread), built
    /// once from the same `[supervision]` section.
    pub breaker: Arc<CircuitBreaker>,
    /// The session's acknowledgement interval (`[session] ack_interval_ms`).
    pub ack_interval_ms: u64,
}

impl PipelineFactory for Pipeline {
    fn honoured(&self) -> Honoured {
        self.recognizers.honoured()
    }

    fn start(
        &self,
        session_id: Arc<str>,
        config: Arc<StartConfig>,
        links: SessionLinks,
    ) -> PipelineHandle {
        // The buffer and the supervisor address each other: the buffer's context (and address)
        // exists before the supervisor starts, the buffer itself runs once it has the
        // supervisor's address.
        let buffer_context = Context::<AudioBuffer>::new();
        let buffer = buffer_context.address();
        let policy = RestartPolicy::from_settings(&self.supervision);
        let stall_tolerance = policy.stall_tolerance();
        let supervisor = StreamSupervisor::new(
            session_id.clone(),
            config.clone(),
            self.recognizers.clone(),
            policy,
            self.breaker.clone(),
            links.clone(),
            BufferControl {
                attach: buffer.clone().recipient(),
                detach: buffer.clone().recipient(),
                force_final: buffer.clone().recipient(),
                finalized: buffer.clone().recipient(),
                stop: buffer.clone().recipient(),
            },
        )
        .start();
        buffer_context.run(AudioBuffer::new(
            session_id,
            config.format,
            self.audio.for_session(config.frame_ms),
            self.ack_interval_ms,
            stall_tolerance,
            AudioBufferLinks {
                acks: links.acks,
                errors: links.errors,
                half_closed: supervisor.clone().recipient(),
                audio_pending: supervisor.clone().recipient(),
            },
        ));
        PipelineHandle {
            audio: buffer.clone().recipient(),
            finalize: buffer.clone().recipient(),
            end: buffer.recipient(),
            stop: supervisor.recipient(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::messages::*;
    use crate::recognizer::probe::ProbeRecognizers;
    use crate::testing::{start_config, Probe};

    const WAIT: Duration = Duration::from_secs(5);

    fn frames(msgs: &[UpstreamAudio]) -> Vec<AudioFrame> {
        msgs.iter()
            .filter_map(|m| match m {
                UpstreamAudio::Frame(f) => Some(f.clone()),
                UpstreamAudio::End => None,
            })
            .collect()
    }

    fn pipeline(recognizers: Rc<ProbeRecognizers>) -> Pipeline {
        let supervision = SupervisionSettings {
            jitter: 0.0,
            ..SupervisionSettings::default()
        };
        Pipeline {
            recognizers,
            audio: AudioSettings::default(),
            breaker: Arc::new(CircuitBreaker::from_settings(&supervision)),
            supervision,
            ack_interval_ms: 500,
        }
    }

    /// The frames of one session's first stream after 200 ms of 16 kHz LINEAR16 audio, started
    /// from `config`.
    async fn first_frames(config: StartConfig, expected: usize) -> Vec<AudioFrame> {
        let recognizers = Rc::new(ProbeRecognizers::default());
        let (session, _log) = Probe::start_new();
        let handle = pipeline(recognizers.clone()).start(
            Arc::from("s1"),
            Arc::new(config),
            Probe::session_links(&session),
        );
        handle.audio.do_send(AudioIn {
            data: Bytes::from(vec![7u8; 6_400]),
            audio_id: None,
        });
        recognizers.wait_started(1, WAIT).await;
        let Some(stream) = recognizers.stream_log(0) else {
            panic!("no stream was started");
        };
        frames(&stream.wait_count::<UpstreamAudio>(expected, WAIT).await)
    }

    /// A session whose dialect chose a frame length (a phone call's 20 ms) gets frames of that
    /// length; one that chose none gets `[audio] frame_ms` (100 ms by default).
    #[actix_rt::test]
    async fn the_buffer_cuts_the_frames_the_dialect_asked_for() {
        tokio::time::pause();
        let call = StartConfig {
            frame_ms: Some(20),
            ..start_config()
        };
        let got = first_frames(call, 10).await;
        let lengths: Vec<usize> = got.iter().map(|f| f.data.len()).collect();
        assert_eq!(lengths, vec![640; 10], "20 ms of 16 kHz LINEAR16 each");
        let starts: Vec<u64> = got.iter().map(|f| f.start_ms).collect();
        assert_eq!(starts, (0..10).map(|i| i * 20).collect::<Vec<u64>>());

        let app = first_frames(start_config(), 2).await;
        let lengths: Vec<usize> = app.iter().map(|f| f.data.len()).collect();
        assert_eq!(
            lengths,
            vec![3_200; 2],
            "the [audio] frame_ms default: 100 ms each"
        );
    }

    /// The real buffer and supervisor wired together: audio reaches the stream, a final comes
    /// back, a failed stream is replaced by one that replays from that final, `stop` half-closes
    /// it, and its clean end finishes the pipeline and stops it.
    #[actix_rt::test]
    async fn buffer_and_supervisor_work_together() {
        tokio::time::pause();
        let recognizers = Rc::new(ProbeRecognizers::default());
        let pipeline = pipeline(recognizers.clone());
        let (session, session_log) = Probe::start_new();
        let config = Arc::new(start_config());
        let handle = pipeline.start(Arc::from("s1"), config, Probe::session_links(&session));
        handle.audio.do_send(AudioIn {
            data: Bytes::from(vec![7u8; 32_000]),
            audio_id: None,
        });
        let requests = recognizers.wait_started(1, WAIT).await;
        let Some(first) = recognizers.stream_log(0) else {
            panic!("the first stream was not started: {}", requests.len());
        };
        assert_eq!(first.wait_count::<UpstreamAudio>(10, WAIT).await.len(), 10);
        let events = requests[0].events.clone();
        events.do_send(RecognizerEvent {
            stream_id: 1,
            kind: RecognizerEventKind::Result(Transcript {
                is_final: true,
                transcript: "hello".into(),
                confidence: 0.9,
                stability: 0.0,
                start_ms: 100,
                end_ms: 500,
                words: Vec::new(),
                language_code: "en-US".into(),
            }),
        });
        events.do_send(RecognizerEvent {
            stream_id: 1,
            kind: RecognizerEventKind::Ended(Err(StreamFailure {
                code: tonic::Code::Unavailable,
                message: "connection reset".into(),
            })),
        });
        let requests = recognizers.wait_started(2, WAIT).await;
        let Some(second) = recognizers.stream_log(1) else {
            panic!("no restart: {} streams", requests.len());
        };
        handle.end.do_send(EndOfAudio);
        let got = second
            .wait_for::<UpstreamAudio>(WAIT, |m| m.last() == Some(&UpstreamAudio::End))
            .await;
        let replay = frames(&got);
        assert_eq!(
            replay.first().map(|f| f.start_ms),
            Some(500),
            "replay from the final"
        );
        assert_eq!(replay.len(), 5);
        assert_eq!(got.last(), Some(&UpstreamAudio::End));
        requests[1].events.do_send(RecognizerEvent {
            stream_id: 2,
            kind: RecognizerEventKind::Ended(Ok(())),
        });
        let finished = session_log.wait_count::<PipelineFinished>(1, WAIT).await;
        assert_eq!(
            finished.first().map(|f| f.summary),
            Some(PipelineSummary {
                results: 1,
                restarts: 1,
                billed_ms: 0,
            })
        );
        assert_eq!(session_log.all::<Transcript>().len(), 1);
        assert_eq!(session_log.all::<PipelineWarning>().len(), 1);
        let acks = session_log.all::<AudioAcked>();
        assert_eq!(acks.last().map(|a| a.audio_ms), Some(1_000));
        let audio_after = handle
            .audio
            .send(AudioIn {
                data: Bytes::from_static(&[0, 0]),
                audio_id: None,
            })
            .await;
        assert!(audio_after.is_err(), "the buffer stopped with the pipeline");
        assert!(
            handle.stop.send(StopPipeline).await.is_err(),
            "the supervisor too"
        );
    }
}
