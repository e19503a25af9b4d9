//! The gRPC service `google.cloud.speech.v2.Speech` on the emulator's port, and [`V2`], its
//! [`Wire`]: the recognizer and config of the first request (`rules`), the responses (`responses`)
//! with voice-activity events — `SPEECH_ACTIVITY_BEGIN` at the first word after a pause,
//! `SPEECH_ACTIVITY_END` at the end of the utterance's last word, sent before its final — the
//! voice-activity timeouts (`speech_start_timeout`: no speech begun that far into the stream's
//! audio; `speech_end_timeout`: no new speech that long after the last ended; either closes the
//! stream OK), and v2's statuses at the limits.

mod responses;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    streaming_recognize_request::StreamingRequest, streaming_recognize_response::SpeechEventType,
    StreamingRecognizeRequest, StreamingRecognizeResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::config::EmulatorConfig;
use crate::generated::v2::speech_server::Speech;
use crate::rules::AcceptedConfig;
use crate::service::{admit, Responses};
use crate::shared::Shared;
use crate::synth::Recognition;
use crate::wire::{Incoming, Wire};

/// The v2 `Speech` service: one instance per emulator, cloned by tonic per connection.
#[derive(Debug, Clone)]
pub(crate) struct SpeechServiceV2 {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Speech for SpeechServiceV2 {
    type StreamingRecognizeStream = Responses<V2>;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<StreamingRecognizeRequest>>,
    ) -> Result<Response<Self::StreamingRecognizeStream>, Status> {
        // The routing header (`x-goog-request-params`) may be present or not, raw or URL-encoded:
        // Google's need for it is unconfirmed, so it is not checked.
        admit::<V2>(&self.shared, request)
    }
}

/// Where the stream's voice activity stands, as its events told the client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SpeechState {
    /// No `SPEECH_ACTIVITY_BEGIN` yet.
    NotYet,
    /// A `BEGIN` was sent and no `END` since.
    Under,
    /// The last `END` was at this many seconds of the stream's audio.
    EndedAt(f64),
}

/// v2's per-stream response state.
pub(crate) struct V2 {
    options: rules::ResponseOptions,
    speech: SpeechState,
}

impl Wire for V2 {
    type Request = StreamingRecognizeRequest;
    type Response = StreamingRecognizeResponse;

    fn incoming(request: Self::Request, configured: bool, config: &EmulatorConfig) -> Incoming<V2> {
        match request.streaming_request {
            Some(StreamingRequest::StreamingConfig(streaming)) => {
                let accepted = if configured {
                    // Out of order anyway; the stream reports it.
                    Err(Status::invalid_argument("config after audio"))
                } else {
                    rules::check_recognizer(&request.recognizer, &config.v2_location)
                        .and_then(|()| rules::accept_config(&streaming))
                };
                Incoming::Config(accepted.map(|(accepted, options)| {
                    let wire = V2 {
                        options,
                        speech: SpeechState::NotYet,
                    };
                    (accepted, wire)
                }))
            }
            Some(StreamingRequest::Audio(audio)) => Incoming::Audio(audio),
            None => Incoming::Nothing,
        }
    }

    fn responses(&mut self, event: &Recognition, config: &AcceptedConfig) -> Vec<Self::Response> {
        let rate = config.sample_rate_hz;
        let mut out = Vec::new();
        let vad = self.options.voice_activity_events;
        let in_speech = self.speech == SpeechState::Under;
        if let (true, false, Some(first)) = (vad, in_speech, event.words.first()) {
            out.push(responses::speech_event(
                SpeechEventType::SpeechActivityBegin,
                first.start_sample,
                rate,
            ));
            self.speech = SpeechState::Under;
        }
        if event.is_final && self.speech == SpeechState::Under {
            let end = event
                .words
                .last()
                .map_or(event.end_sample, |w| w.end_sample);
            out.push(responses::speech_event(
                SpeechEventType::SpeechActivityEnd,
                end,
                rate,
            ));
            self.speech = SpeechState::EndedAt(end as f64 / f64::from(rate.max(1)));
        }
        if !event.words.is_empty() || event.is_final {
            out.push(responses::result_response(event, config, &self.options));
        }
        out
    }

    fn end_of_single_utterance(at_sample: u64, config: &AcceptedConfig) -> Self::Response {
        responses::speech_event(
            SpeechEventType::EndOfSingleUtterance,
            at_sample,
            config.sample_rate_hz,
        )
    }

    fn stream_limit_status(limit: Duration) -> Status {
        rules::stream_limit_status(limit)
    }

    fn audio_timeout_status() -> Status {
        Status::aborted(rules::IDLE)
    }

    fn max_request_bytes(config: &EmulatorConfig) -> usize {
        config.v2_max_request_bytes
    }

    fn speech_timed_out(&self, audio_secs: f64) -> bool {
        let timeouts = &self.options.speech_timeouts;
        match self.speech {
            SpeechState::NotYet => timeouts.start.is_some_and(|t| audio_secs > t),
            SpeechState::Under => false,
            SpeechState::EndedAt(end) => timeouts.end.is_some_and(|t| audio_secs - end > t),
        }
    }
}
