//! What differs between the Speech API versions the emulator serves (v1, v2), behind one trait, so
//! that a stream (`super::stream`) runs Google's rules, the recogniser and the faults once for both:
//! how a request is read (config, audio, or out of order), how recognition events become response
//! messages, and the statuses each version ends a stream with at its limits.

use std::time::Duration;

use tonic::Status;

use super::config::EmulatorConfig;
use super::rules::AcceptedConfig;
use super::synth::Recognition;

/// What one request carries, as the stream's rules need it.
pub(crate) enum Incoming<W> {
    /// A configuration (valid for this version, with the per-stream wire state), or why not.
    Config(Result<(AcceptedConfig, W), Status>),
    /// Audio bytes.
    Audio(bytes::Bytes),
    /// Neither (a request with nothing set).
    Nothing,
}

/// One Speech API version's messages and statuses. A value of it is the per-stream state of the
/// responses (e.g. whether speech is under way, for voice-activity events).
pub(crate) trait Wire: Sized + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;

    /// Reads one request; `configured` tells whether the stream already has its config (a version
    /// may read a request differently then, e.g. v2 validates the recognizer on the first only).
    fn incoming(
        request: Self::Request,
        configured: bool,
        config: &EmulatorConfig,
    ) -> Incoming<Self>;

    /// The responses for one recognition event, in order.
    fn responses(&mut self, event: &Recognition, config: &AcceptedConfig) -> Vec<Self::Response>;

    /// `END_OF_SINGLE_UTTERANCE` at `at_sample` of the stream's audio.
    fn end_of_single_utterance(at_sample: u64, config: &AcceptedConfig) -> Self::Response;

    /// The status at the stream duration limit.
    fn stream_limit_status(limit: Duration) -> Status;

    /// The status when no audio arrived for the audio timeout.
    fn audio_timeout_status() -> Status;

    /// The largest audio one request may carry under this version's rules.
    fn max_request_bytes(config: &EmulatorConfig) -> usize;

    /// Whether the client's voice-activity timeouts close the stream now, `audio_secs` into its
    /// audio (v2's `speech_start_timeout` / `speech_end_timeout`; v1 has none here).
    fn speech_timed_out(&self, audio_secs: f64) -> bool {
        let _ = audio_secs;
        false
    }
}
