//! How a session gets its pipeline (audio buffer + stream supervisor + recognizers).
//!
//! The session only knows this trait and the [`PipelineHandle`] it returns, so a test can start a
//! session whose pipeline is a probe. [`Pipeline`] is the real one.

use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;

use crate::audio_buffer::AudioBuffer;
use crate::messages::{AudioBufferLinks, BufferControl, PipelineHandle, SessionLinks};
use crate::protocol::StartConfig;
use crate::recognizer::RecognizerFactory;
use crate::restart_policy::RestartPolicy;
use crate::settings::{AudioSettings, SupervisionSettings};
use crate::supervisor::StreamSupervisor;

/// Starts the actors that carry one session's audio upstream and its results back. Called on the
/// session's arbiter when the session is configured; everything it starts lives there too.
pub trait PipelineFactory {
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
    /// Re-chunking, pacing and bounds of the audio buffer.
    pub audio: AudioSettings,
    /// The restart policy of upstream streams.
    pub supervision: SupervisionSettings,
    /// The session's acknowledgement interval (`[session] ack_interval_ms`).
    pub ack_interval_ms: u64,
}

impl PipelineFactory for Pipeline {
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
        let supervisor = StreamSupervisor::new(
            session_id.clone(),
            config.clone(),
            self.recognizers.clone(),
            RestartPolicy::from_settings(&self.supervision),
            links.clone(),
            BufferControl {
                attach: buffer.clone().recipient(),
                detach: buffer.clone().recipient(),
                finalized: buffer.clone().recipient(),
                stop: buffer.clone().recipient(),
            },
        )
        .start();
        buffer_context.run(AudioBuffer::new(
            session_id,
            config.format,
            self.audio.clone(),
            self.ack_interval_ms,
            AudioBufferLinks {
                acks: links.acks,
                errors: links.errors,
                half_closed: supervisor.clone().recipient(),
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
