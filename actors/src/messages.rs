//! Every message exchanged between voxgate's actors, in one place.
//!
//! Messages are small named types. Actors hold their neighbours as `Recipient<M>` (grouped in the
//! `*Links` structs below) rather than concrete `Addr<A>`, so each actor can be tested alone with a
//! `testing::Probe` (cargo feature `test-util`) in its neighbours' places. Messages sent to one
//! actor through recipients of the same address share one mailbox, so their order is preserved.
//!
//! Times are milliseconds on the *session clock* (audio since the session's first byte) unless a
//! field says otherwise.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::protocol::{ErrorCode, StartConfig};

// ───────────────────────────── Session → AudioBuffer ─────────────────────────────

/// A chunk of client audio, in arrival order (binary frame or decoded base64 `audio` message).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AudioIn {
    pub data: Bytes,
    /// The client's `audio_id` of a JSON audio message, echoed in the next acknowledgement.
    pub audio_id: Option<String>,
}

/// The client asked for final results for all audio so far (`finalize`); the session carries on.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Finalize;

/// The client sent `stop`: no more audio will come.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct EndOfAudio;

/// Tear the whole pipeline down now (the socket is gone or the session is being closed).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopPipeline;

/// Audio of one channel of a multichannel session (a telephony track), in arrival order.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ChannelAudioIn {
    pub channel: usize,
    pub data: Bytes,
}

// ───────────────────────────── AudioBuffer → recognizer ─────────────────────────────

/// One re-chunked piece of audio, at most the upstream per-request size.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Where the frame starts on the session clock. The first frame a recognizer receives is the
    /// origin of its stream's times.
    pub start_ms: u64,
    /// Byte offset of the frame in the session's audio.
    pub start_byte: u64,
    pub data: Bytes,
}

/// What the audio buffer sends to the recognizer of the current stream.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub enum UpstreamAudio {
    Frame(AudioFrame),
    /// No more audio for this stream: half-close it and deliver the remaining finals.
    End,
}

/// Abandon the stream now (no half-close, no more results wanted).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct CancelStream;

// ───────────────────────────── StreamSupervisor → AudioBuffer ─────────────────────────────

/// Where a newly attached stream starts in the buffered audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Replay retained audio from this session time (the end of the last final result); the buffer
    /// cuts the frame that contains it so the stream starts exactly there where the encoding allows.
    FromMs(u64),
    /// Everything sent so far is final (the previous stream was half-closed and ended cleanly):
    /// drop what is retained and continue with the audio not yet sent.
    AfterSent,
}

/// Send audio to this stream from now on.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AttachStream {
    pub stream_id: u64,
    pub sink: Recipient<UpstreamAudio>,
    pub resume: Resume,
}

/// The stream failed: stop sending to it and keep buffering until the next `AttachStream`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct DetachStream {
    pub stream_id: u64,
}

/// Half-close this stream now, after the audio already sent to it, to force its final result
/// (no final came for long). Ignored unless it is the attached stream.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ForceFinal {
    pub stream_id: u64,
}

/// Audio before `upto_ms` has been finalised upstream and need not be kept for replay.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Finalized {
    pub upto_ms: u64,
}

// ───────────────────────────── AudioBuffer → StreamSupervisor ─────────────────────────────

/// Why the buffer half-closed a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfCloseReason {
    /// The client sent `finalize`; more audio may follow on a new stream.
    Finalize,
    /// The client sent `stop`; this was the last audio.
    EndOfAudio,
    /// No client audio for `[audio] gap_close_ms`: the stream is closed before Google's audio
    /// timeout would end it; the next one opens when audio comes again.
    Gap,
    /// The supervisor asked for it ([`ForceFinal`]): no final came for long (speech without a
    /// pause); the next stream continues from the forced final's end. Not a marker in the audio:
    /// a replay after a failure is not half-closed there again.
    ForcedFinal,
}

/// The buffer sent [`UpstreamAudio::End`] to `stream_id` after the audio up to `at_ms`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct UpstreamHalfClosed {
    pub stream_id: u64,
    pub reason: HalfCloseReason,
    pub at_ms: u64,
}

/// Audio (or a `stop`) is waiting for a stream and none is open for it: sent for the first audio
/// of the session and for the first after a half-close (`finalize`, audio gap), so the supervisor
/// opens streams only when there is audio for them.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct AudioPending;

// ───────────────────────────── recognizer → StreamSupervisor ─────────────────────────────

/// One word with its times on the session clock.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTiming {
    pub word: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
}

/// A recognition result on the session clock: what the client receives as a `transcript` message.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct Transcript {
    pub is_final: bool,
    pub transcript: String,
    pub confidence: f32,
    /// 0–1 for interim results (how likely they are to change); 0 for finals.
    pub stability: f32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub words: Vec<WordTiming>,
    pub language_code: String,
}

/// Whether speech began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechActivity {
    Started,
    Ended,
}

/// The upstream heard speech begin or end at `at_ms` (session clock): the client's
/// `speech_started` / `speech_ended` (asked for with `voice_activity_events`).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct VoiceActivity {
    pub activity: SpeechActivity,
    pub at_ms: u64,
}

/// A stream failure as a gRPC status (the local engine maps its failures to codes too).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFailure {
    pub code: tonic::Code,
    pub message: String,
}

/// What happened on a recognizer's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum RecognizerEventKind {
    /// The upstream accepted the call (it answered the opening request): the upstream works.
    Opened,
    /// A result, already shifted onto the session clock.
    Result(Transcript),
    /// Google signalled the end of a single utterance (`single_utterance` mode).
    EndOfSingleUtterance,
    /// Voice activity, already on the session clock.
    VoiceActivity(VoiceActivity),
    /// The upstream billed this many more milliseconds of audio for the stream (the increase of
    /// its cumulative billed duration).
    Billed(u64),
    /// The stream is over: `Ok` after a clean end of the call, `Err` with the status otherwise.
    Ended(Result<(), StreamFailure>),
    /// The stream could not start for lack of capacity (every local decoder is in use); reported
    /// instead of `Ended`, as the stream's only event. Not a failure to restart from: the session
    /// gets `busy` at once.
    Busy(String),
}

#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct RecognizerEvent {
    pub stream_id: u64,
    pub kind: RecognizerEventKind,
}

// ───────────────────────────── pipeline → Session ─────────────────────────────

/// A result of one channel of a multichannel session (`crate::multichannel`).
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct ChannelTranscript {
    pub channel: usize,
    pub transcript: Transcript,
}

/// Cumulative audio accepted into the buffer (the client's flow control).
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct AudioAcked {
    pub audio_ms: u64,
    pub audio_id: Option<String>,
}

/// Something the client should know that does not end the session (upstream reconnecting, …).
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct PipelineWarning {
    pub code: &'static str,
    pub message: String,
}

/// The pipeline cannot go on: the session sends `error` with this code and closes.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct PipelineError {
    pub code: ErrorCode,
    pub message: String,
}

/// Counters reported in the client's `closed` message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineSummary {
    /// Final results delivered.
    pub results: u64,
    /// Upstream streams restarted after a failure (rotations excluded).
    pub restarts: u64,
    /// Audio the upstream billed, summed over the session's streams (0 if it reports none).
    pub billed_ms: u64,
}

/// After `stop`: every final result has been delivered; the session may send `closed`.
#[derive(Message, Debug, Clone, Copy, PartialEq)]
#[rtype(result = "()")]
pub struct PipelineFinished {
    pub summary: PipelineSummary,
}

// ───────────────────────────── neighbour sets ─────────────────────────────

/// Where the pipeline reports to its session.
#[derive(Clone)]
pub struct SessionLinks {
    pub transcripts: Recipient<Transcript>,
    pub voice_activity: Recipient<VoiceActivity>,
    pub acks: Recipient<AudioAcked>,
    pub warnings: Recipient<PipelineWarning>,
    pub errors: Recipient<PipelineError>,
    pub finished: Recipient<PipelineFinished>,
}

/// How a session drives its pipeline. All four recipients but `stop` point at the audio buffer, so
/// audio, `finalize` and `stop` keep their order.
#[derive(Clone)]
pub struct PipelineHandle {
    pub audio: Recipient<AudioIn>,
    pub finalize: Recipient<Finalize>,
    pub end: Recipient<EndOfAudio>,
    pub stop: Recipient<StopPipeline>,
}

/// What the supervisor needs to start one upstream stream.
#[derive(Clone)]
pub struct StreamRequest {
    pub stream_id: u64,
    pub session_id: Arc<str>,
    pub config: Arc<StartConfig>,
    pub events: Recipient<RecognizerEvent>,
}

/// The running stream a recognizer factory returns.
#[derive(Clone)]
pub struct StreamHandle {
    pub audio: Recipient<UpstreamAudio>,
    pub cancel: Recipient<CancelStream>,
}

/// Where the audio buffer reports: acknowledgements and `buffer_full` go straight to the session,
/// half-closes and pending audio to the stream supervisor.
#[derive(Clone)]
pub struct AudioBufferLinks {
    pub acks: Recipient<AudioAcked>,
    pub errors: Recipient<PipelineError>,
    pub half_closed: Recipient<UpstreamHalfClosed>,
    pub audio_pending: Recipient<AudioPending>,
}

/// How the stream supervisor drives the audio buffer. All point at the same buffer, so their
/// order is preserved.
#[derive(Clone)]
pub struct BufferControl {
    pub attach: Recipient<AttachStream>,
    pub detach: Recipient<DetachStream>,
    pub force_final: Recipient<ForceFinal>,
    pub finalized: Recipient<Finalized>,
    pub stop: Recipient<StopPipeline>,
}
