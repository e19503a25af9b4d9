//! The configuration sections the actors obey. The service (`src/config.rs`) reads them from
//! `config.toml` and the environment; every field has a default, and unknown keys are rejected.

use std::path::PathBuf;

use serde::Deserialize;

/// `[session]`: the client-facing limits of one WebSocket session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Server pings the client this often.
    pub heartbeat_interval_secs: f64,
    /// No frame at all (not even a pong) for this long: the connection is dead, close it.
    pub client_timeout_secs: f64,
    /// No `start` within this long after the upgrade: `start_timeout`.
    pub start_timeout_secs: f64,
    /// No audio and no `keepalive` for this long after `start`: `idle_timeout`.
    pub idle_timeout_secs: f64,
    /// Hard cap on a session's length: `session_too_long`.
    pub max_session_secs: f64,
    /// Largest WebSocket message accepted (binary audio or JSON text): `frame_too_large`.
    pub max_frame_bytes: usize,
    /// Concurrent sessions the server accepts: `too_many_sessions` beyond.
    pub max_sessions: usize,
    /// An `ack` is sent each time this much more audio has been accepted.
    pub ack_interval_ms: u64,
    /// How many phrase hints a `start` may carry.
    pub max_phrases: usize,
    /// Sessions one client address (an IPv4 address, or an IPv6 /64) may have open at once:
    /// `too_many_client_sessions` beyond.
    pub max_sessions_per_ip: usize,
    /// Sessions one API key (with the session tokens it minted) may have open at once:
    /// `too_many_client_sessions` beyond.
    pub max_sessions_per_key: usize,
    /// Largest JSON text message: `json_too_large` (binary audio frames are bounded by
    /// `max_frame_bytes` only).
    pub max_json_bytes: usize,
    /// WebSocket frames of any kind (data, ping, pong) a client may send per second, on average
    /// over one second: `too_many_messages` beyond. Stops floods of tiny frames and pings.
    pub max_messages_per_sec: u32,
    /// Input faster than this multiple of real time (for the configured audio format) is paced:
    /// the server stops reading the socket until the client is back within the rate.
    pub max_audio_speed: f64,
    /// Input (in milliseconds of audio) a client may send at once before pacing starts.
    pub audio_burst_ms: u64,
    /// How far a client's audio may run ahead of real time (ms since its first audio byte):
    /// `audio_too_fast` beyond.
    pub max_audio_lead_ms: u64,
    /// Bytes of server messages waiting for a client that does not read them: `slow_consumer`
    /// beyond.
    pub max_outgoing_bytes: usize,
    /// How long a resume token stays valid, i.e. how long after its connection dropped a
    /// session can be resumed (`docs/protocol.md`, "Resume"); 0 = resume off.
    pub resume_window_secs: f64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            heartbeat_interval_secs: 10.0,
            client_timeout_secs: 30.0,
            start_timeout_secs: 10.0,
            idle_timeout_secs: 60.0,
            max_session_secs: 4.0 * 3600.0,
            max_frame_bytes: 256 * 1024,
            max_sessions: 10_000,
            ack_interval_ms: 500,
            max_phrases: 500,
            max_sessions_per_ip: 100,
            max_sessions_per_key: 1_000,
            max_json_bytes: 64 * 1024,
            max_messages_per_sec: 1_000,
            max_audio_speed: 2.0,
            audio_burst_ms: 5_000,
            max_audio_lead_ms: 60_000,
            max_outgoing_bytes: 256 * 1024,
            resume_window_secs: 120.0,
        }
    }
}

/// `[audio]`: how the audio buffer re-chunks, paces and bounds audio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSettings {
    /// Upstream frame length (Google recommends ~100 ms), for every session whose dialect does
    /// not choose its own (phone calls: `[dialects.twilio|telnyx|jambonz] frame_ms`).
    pub frame_ms: u64,
    /// Upstream per-request audio limit (Google: 25 KB).
    pub max_request_bytes: usize,
    /// Audio accepted but not yet sent upstream, at most: `buffer_full` beyond when a client sends
    /// faster than it can be forwarded, `upstream_unavailable` when no stream could take it (an
    /// outage longer than the buffer).
    pub max_buffer_ms: u64,
    /// Audio sent but not yet finalised, kept for replay after a restart; the oldest is dropped
    /// beyond. At least `max_buffer_ms`: a backlog sent during a catch-up must stay replayable.
    pub max_replay_ms: u64,
    /// The burst: how far ahead of real time a stream may be fed at once from where it started.
    pub max_lead_ms: u64,
    /// Beyond the burst, a stream with a backlog (a replay after a restart, audio buffered during an
    /// outage, a client faster than real time) is fed at this multiple of real time until it has
    /// caught up with the live audio. Bounded by Google's "too fast" rule (1–2).
    pub catchup_speed: f64,
    /// No client audio for this long: the stream is half-closed (its last words become final) and
    /// the next one opens when audio comes again, so Google's ~10 s audio timeout never fires.
    pub gap_close_ms: u64,
}

impl Default for AudioSettings {
    fn default() -> Self {
        AudioSettings {
            frame_ms: 100,
            max_request_bytes: 25_600,
            max_buffer_ms: 60_000,
            max_replay_ms: 120_000,
            max_lead_ms: 2_000,
            catchup_speed: 1.5,
            gap_close_ms: 5_000,
        }
    }
}

impl AudioSettings {
    /// The settings of one session: these, with the frame length its dialect chose if it chose
    /// one (`StartConfig::frame_ms`).
    pub fn for_session(&self, frame_ms: Option<u64>) -> AudioSettings {
        AudioSettings {
            frame_ms: frame_ms.unwrap_or(self.frame_ms),
            ..self.clone()
        }
    }
}

/// `[supervision]`: the restart policy of every upstream stream, as data (OTP style).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionSettings {
    /// gRPC codes (Google's names, e.g. `UNAVAILABLE`) after which a stream is restarted.
    /// `UNAUTHENTICATED` is special: always retried once at once with a fresh token; listed here,
    /// it is also retried with backoff after that.
    pub retryable_codes: Vec<String>,
    /// First backoff; each further consecutive failure multiplies it by `backoff_multiplier`.
    pub initial_backoff_ms: u64,
    pub backoff_multiplier: f64,
    /// Backoff never exceeds this.
    pub max_backoff_ms: u64,
    /// Each backoff is randomised by ± this fraction, so sessions do not retry in lockstep.
    pub jitter: f64,
    /// Restart intensity: at most `max_restarts` restarts within `restart_period_secs`; beyond that
    /// the session gets `upstream_unavailable` and is closed. Restarts held back by an open circuit
    /// breaker are not counted (an outage is the breaker's business, not one session's).
    pub max_restarts: u32,
    pub restart_period_secs: f64,
    /// Proactive rotation: from this stream age on, the stream is replaced at its next final result
    /// by a stream opened ahead of time (Google ends streams after ~305 s).
    pub rotate_after_secs: f64,
    /// At this age the stream is replaced whatever (no final came since `rotate_after_secs`).
    pub max_stream_secs: f64,
    /// A stream opened ahead of time waits at most this long for its switch; then it is replaced
    /// by a fresh one (Google ends a stream that gets no audio for ~10 s).
    pub standby_max_wait_secs: f64,
    /// A stream that gave no final result for this long (speech without a pause) is half-closed
    /// to force its final, and the next stream continues from that final's end; so a stream never
    /// reaches its duration limit with more unfinalised audio than this. Below `max_stream_secs`;
    /// 0 = never.
    pub force_final_after_secs: f64,
    /// A timer that fires more than this late (ms) means the gateway itself was stalled —
    /// stopped, or starved of CPU — and may not have read what came meanwhile: the audio gap
    /// (`[audio] gap_close_ms`) and the forced final (`force_final_after_secs`) are then watched
    /// again from that moment instead of acted on, and each is confirmed this much later by a
    /// timer on time (see `quiet_watch`). 0 = no stall detection.
    pub stall_tolerance_ms: u64,
    /// gRPC codes that say the upstream itself is in trouble: they count for the circuit breaker
    /// shared by every session of the process.
    pub breaker_codes: Vec<String>,
    /// The breaker opens after this many such failures in a row (across sessions, no stream
    /// opening successfully in between)…
    pub breaker_failures: u32,
    /// …for this long at first; each failed probe doubles it, up to `breaker_max_open_ms`.
    pub breaker_open_ms: u64,
    pub breaker_max_open_ms: u64,
}

impl SupervisionSettings {
    /// `stall_tolerance_ms` as the watches take it (`crate::quiet_watch`): `None` for 0, no
    /// stall detection.
    pub fn stall_tolerance(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(self.stall_tolerance_ms)).filter(|d| !d.is_zero())
    }
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        SupervisionSettings {
            retryable_codes: [
                "UNAVAILABLE",
                "INTERNAL",
                "RESOURCE_EXHAUSTED",
                "DEADLINE_EXCEEDED",
                "OUT_OF_RANGE",
                "ABORTED",
                "UNKNOWN",
            ]
            .map(String::from)
            .to_vec(),
            initial_backoff_ms: 100,
            backoff_multiplier: 2.0,
            max_backoff_ms: 5_000,
            jitter: 0.2,
            max_restarts: 10,
            restart_period_secs: 60.0,
            rotate_after_secs: 240.0,
            max_stream_secs: 290.0,
            standby_max_wait_secs: 5.0,
            force_final_after_secs: 60.0,
            stall_tolerance_ms: 250,
            breaker_codes: [
                "UNAVAILABLE",
                "INTERNAL",
                "RESOURCE_EXHAUSTED",
                "DEADLINE_EXCEEDED",
                "UNKNOWN",
            ]
            .map(String::from)
            .to_vec(),
            breaker_failures: 5,
            breaker_open_ms: 1_000,
            breaker_max_open_ms: 5_000,
        }
    }
}

/// How the gateway authenticates to Google.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoogleAuth {
    /// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud, metadata server).
    Adc,
    /// No credentials: for the emulator or a trusted proxy.
    None,
}

/// Which Google Speech-to-Text API the gateway speaks (`[google] api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoogleApi {
    /// v1: needs credentials only; frozen by Google (no chirp models, no regional endpoints).
    #[default]
    V1,
    /// v2: recognizers, chirp models, regional endpoints, several languages, voice activity
    /// events; needs a project and a location.
    V2,
}

/// The longest `[google] write_coalesce_ms` accepted: audio may wait this long before it leaves.
pub const MAX_WRITE_COALESCE_MS: f64 = 50.0;

/// The global endpoint, `[google] endpoint`'s default.
pub const GOOGLE_GLOBAL_ENDPOINT: &str = "https://speech.googleapis.com";

/// `[google]`: the upstream Google Speech-to-Text endpoint and API version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleSettings {
    /// `https://…` (TLS, certificates verified) or `http://…` (plaintext, e.g. the emulator).
    pub endpoint: String,
    pub api: GoogleApi,
    /// v2: the location (`global`, `us`, `eu`, `europe-west4`, …) of the recognizer; with the
    /// default endpoint it also picks the regional endpoint ([`GoogleSettings::v2_endpoint`]).
    pub location: String,
    /// v2: the Google Cloud project of the recognizer (required with `backend = "google"`).
    pub project: Option<String>,
    /// v2: the recognizer id; `_` is the implicit recognizer (every stream sends its full config).
    pub recognizer: String,
    pub auth: GoogleAuth,
    /// Google front ends allow 100 concurrent streams per HTTP/2 connection; the pool opens another
    /// connection beyond this.
    pub streams_per_connection: usize,
    pub connect_timeout_secs: f64,
    /// A connection writes at most once per this many milliseconds: the audio of its streams
    /// that is ready meanwhile leaves in one write (0 = every frame in a write of its own).
    pub write_coalesce_ms: f64,
    /// Optional `x-goog-user-project` (quota project).
    pub quota_project: Option<String>,
    /// Extra trust roots (PEM) for the upstream and its token endpoint, beside the public ones:
    /// a TLS-inspecting proxy's CA, or a test CA. Certificates are always verified.
    pub ca_file: Option<String>,
}

impl Default for GoogleSettings {
    fn default() -> Self {
        GoogleSettings {
            endpoint: GOOGLE_GLOBAL_ENDPOINT.to_string(),
            api: GoogleApi::V1,
            location: "global".to_string(),
            project: None,
            recognizer: "_".to_string(),
            auth: GoogleAuth::Adc,
            streams_per_connection: 100,
            connect_timeout_secs: 10.0,
            write_coalesce_ms: 2.0,
            quota_project: None,
            ca_file: None,
        }
    }
}

impl GoogleSettings {
    /// The endpoint a v2 stream calls: `[google] endpoint` when set to anything but the default,
    /// else the location's (`https://{location}-speech.googleapis.com`; `global` → the default).
    /// Google refuses a recognizer whose location is not the endpoint's.
    pub fn v2_endpoint(&self) -> String {
        if self.endpoint != GOOGLE_GLOBAL_ENDPOINT || self.location == "global" {
            self.endpoint.clone()
        } else {
            format!("https://{}-speech.googleapis.com", self.location)
        }
    }
}

/// `[local]`: the offline speech engines (`[recognizer] backend = "local"`): Moonshine on ONNX
/// Runtime (the default; its files are installed by `scripts/setup-offline-engine.sh`) or
/// PocketSphinx (the defaults are where Debian's `pocketsphinx-en-us` installs its US English model).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSettings {
    /// Which engine recognises the audio.
    pub engine: LocalEngineKind,
    /// Where the setup script installed the Moonshine engine's files; empty = its default,
    /// `$VOXGATE_ENGINE_DIR`, else `$XDG_DATA_HOME/voxgate/engine`, else
    /// `$HOME/.local/share/voxgate/engine` ([`LocalSettings::engine_dir`]).
    pub engine_dir: PathBuf,
    /// The Moonshine model directory (`encoder_model.ort`, `decoder_model_merged.ort`,
    /// `tokenizer.bin`); empty = `<engine_dir>/moonshine-tiny-en`.
    pub moonshine_dir: PathBuf,
    /// The ONNX Runtime shared library (version 1.22 or later); empty =
    /// `<engine_dir>/onnxruntime/libonnxruntime.so.1.32.0`.
    pub onnxruntime_library: PathBuf,
    /// Acoustic model directory (PocketSphinx `-hmm`: `mdef`, `means`, `variances`, …).
    pub model_dir: PathBuf,
    /// Pronunciation dictionary (`-dict`).
    pub dictionary: PathBuf,
    /// N-gram language model, ARPA or binary (`-lm`).
    pub language_model: PathBuf,
    /// Inference workers (threads, each with its own loaded model) shared by every stream.
    /// 0 = one per CPU core.
    pub workers: usize,
    /// Silence after speech that ends an utterance (a final result), in ms (10 ms steps).
    pub end_silence_ms: u64,
    /// The open segment is re-decoded for an interim result about this often, in ms
    /// of audio (skipped while the workers are busy, never queued).
    pub redecode_interval_ms: u64,
    /// Speech without a pause this long is cut into segments (Moonshine drops words in long
    /// inputs), in ms.
    pub max_segment_ms: u64,
    /// New streams are refused with `busy` when the workers' measured load (share of their time
    /// spent decoding over the last seconds) is above this, or finals wait in the queue for more
    /// than `max_queue_wait_ms`.
    pub max_load: f64,
    /// See `max_load`, in ms.
    pub max_queue_wait_ms: u64,
}

/// `[local] engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalEngineKind {
    /// Moonshine tiny (English) on ONNX Runtime.
    Moonshine,
    /// PocketSphinx with its US English model.
    Pocketsphinx,
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings {
            engine: LocalEngineKind::Moonshine,
            engine_dir: PathBuf::new(),
            moonshine_dir: PathBuf::new(),
            onnxruntime_library: PathBuf::new(),
            model_dir: PathBuf::from("/usr/share/pocketsphinx/model/en-us/en-us"),
            dictionary: PathBuf::from("/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"),
            language_model: PathBuf::from("/usr/share/pocketsphinx/model/en-us/en-us.lm.bin"),
            workers: 0,
            end_silence_ms: 500,
            redecode_interval_ms: 1_000,
            max_segment_ms: 15_000,
            max_load: 0.9,
            max_queue_wait_ms: 500,
        }
    }
}

impl LocalSettings {
    /// The engine directory: `engine_dir`, or the setup script's default (see the field).
    pub fn engine_dir(&self) -> PathBuf {
        if !self.engine_dir.as_os_str().is_empty() {
            return self.engine_dir.clone();
        }
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("VOXGATE_ENGINE_DIR") {
            return PathBuf::from(dir);
        }
        let data = var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/usr/local/share"));
        data.join("voxgate/engine")
    }

    /// The Moonshine model directory (`moonshine_dir` or its default).
    pub fn moonshine_model_dir(&self) -> PathBuf {
        if self.moonshine_dir.as_os_str().is_empty() {
            self.engine_dir().join("moonshine-tiny-en")
        } else {
            self.moonshine_dir.clone()
        }
    }

    /// The ONNX Runtime library (`onnxruntime_library` or its default).
    pub fn onnxruntime_path(&self) -> PathBuf {
        if self.onnxruntime_library.as_os_str().is_empty() {
            self.engine_dir()
                .join("onnxruntime/libonnxruntime.so.1.32.0")
        } else {
            self.onnxruntime_library.clone()
        }
    }
}

/// Every gRPC status code with its canonical name, as written in config, logs and metric labels.
const GRPC_CODES: [(tonic::Code, &str); 17] = [
    (tonic::Code::Ok, "OK"),
    (tonic::Code::Cancelled, "CANCELLED"),
    (tonic::Code::Unknown, "UNKNOWN"),
    (tonic::Code::InvalidArgument, "INVALID_ARGUMENT"),
    (tonic::Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (tonic::Code::NotFound, "NOT_FOUND"),
    (tonic::Code::AlreadyExists, "ALREADY_EXISTS"),
    (tonic::Code::PermissionDenied, "PERMISSION_DENIED"),
    (tonic::Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (tonic::Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (tonic::Code::Aborted, "ABORTED"),
    (tonic::Code::OutOfRange, "OUT_OF_RANGE"),
    (tonic::Code::Unimplemented, "UNIMPLEMENTED"),
    (tonic::Code::Internal, "INTERNAL"),
    (tonic::Code::Unavailable, "UNAVAILABLE"),
    (tonic::Code::DataLoss, "DATA_LOSS"),
    (tonic::Code::Unauthenticated, "UNAUTHENTICATED"),
];

/// Parses a canonical gRPC code name such as `UNAVAILABLE` (case-insensitive).
pub fn parse_grpc_code(name: &str) -> Option<tonic::Code> {
    GRPC_CODES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(c, _)| *c)
}

/// The canonical name of a gRPC code (`UNAVAILABLE`).
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    GRPC_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("UNKNOWN", |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_round_trips_by_name() {
        for (code, name) in GRPC_CODES {
            assert_eq!(parse_grpc_code(name), Some(code));
            assert_eq!(grpc_code_name(code), name);
        }
        assert_eq!(
            parse_grpc_code("unavailable"),
            Some(tonic::Code::Unavailable)
        );
        assert_eq!(parse_grpc_code("NOPE"), None);
    }

    #[test]
    fn default_retryable_codes_are_valid_names() {
        let defaults = SupervisionSettings::default();
        for name in defaults
            .retryable_codes
            .iter()
            .chain(&defaults.breaker_codes)
        {
            assert!(parse_grpc_code(name).is_some(), "{name}");
        }
    }
}
