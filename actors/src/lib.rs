//! # voxgate-actors
//!
//! The actors of the voxgate gateway and the messages between them. One WebSocket connection is one
//! [`session::Session`]; it owns the socket and the client protocol and nothing else. The audio it
//! accepts flows through an [`audio_buffer::AudioBuffer`] (ordering, bounds, re-chunking, pacing, replay)
//! into a recognizer that owns one upstream recognition stream (Google `StreamingRecognize`). A
//! [`supervisor::StreamSupervisor`] starts each recognizer, watches it, restarts it by policy and routes
//! its results back to the session on the session's own clock.
//!
//! ```text
//!  client ──ws──▶ Session ──AudioIn/Finalize/EndOfAudio──▶ AudioBuffer ──UpstreamAudio──▶ Recognizer ──gRPC──▶ Google
//!                   ▲                                        ▲      │                         │
//!                   │        Transcript/AudioAcked/…         │ Attach/Detach/Finalized        │ RecognizerEvent
//!                   └────────────────────────────── StreamSupervisor ◀─────────────────────────┘
//! ```
//!
//! Layout:
//! - [`messages`]: every message type exchanged between the actors (small named types).
//! - [`protocol`]: client-facing protocols: [`protocol::native`] (voxgate's wire protocol v1, its
//!   JSON messages), beside the dialects to come; at its top what they all share: the start
//!   configuration and the table of error codes.
//! - [`audio`]: audio encodings, byte ⇄ millisecond arithmetic, the stream-signature check.
//! - [`settings`]: the configuration sections the actors obey (limits, pacing, restart policy, Google,
//!   the local engine).
//! - [`pipeline`]: how a session starts its pipeline (a trait, so tests can substitute probes).
//! - [`multichannel`]: a session of several channels (a call's tracks): a pipeline per channel
//!   behind one mux that splits the audio and tags the results.
//! - [`session`]: the session actor (socket, heartbeat, protocol), the upgrade that starts it, and
//!   its helpers (fragment reassembly, frame limits, read pacing, outgoing backlog).
//! - [`audio_buffer`]: the audio buffer actor (and its frame store: re-chunking, retention, replay).
//! - [`recognizer`]: the recognizer actors (one upstream stream each) and how the supervisor creates
//!   them; [`recognizer::google_v1`] talks to Google over a per-thread connection pool;
//!   `recognizer::local` (cargo feature `local`) decodes offline (Moonshine or PocketSphinx) on one
//!   pool of inference workers shared by every stream.
//! - [`supervisor`]: the stream supervisor: routing, dedup of finals, restarts.
//! - [`restart_policy`]: the restart policy as data (retryable codes, backoff, intensity).
//! - [`quiet_watch`]: watching for a span without client audio or without a final, counting only
//!   time the gateway was awake (a starved or stopped gateway's late timers conclude nothing).
//! - [`token_bucket`]: the token bucket behind every rate (connections, frames, input, pacing).
//! - [`circuit_breaker`]: the process-wide breaker that holds every session back while the
//!   upstream is down.
//! - [`metrics`]: Prometheus metrics shared by every actor.
//! - [`webhooks`]: transcripts posted to HTTP receivers (signed, ordered, retried, bounded), for
//!   the dialects whose socket is not the application's (Twilio, Telnyx) and for clients that ask.
//! - `testing` (cargo feature `test-util`, and in this crate's tests): a probe actor that records
//!   what it receives, and a `StartConfig` fixture; with `recognizer::probe` and the local engine's
//!   `test_support`, the test doubles — none of them is compiled into what ships.

pub mod audio;
pub mod audio_buffer;
pub mod circuit_breaker;
pub mod messages;
pub mod metrics;
pub mod multichannel;
pub mod pipeline;
pub mod protocol;
pub mod quiet_watch;
pub mod recognizer;
pub mod restart_policy;
pub mod session;
pub mod settings;
pub mod supervisor;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod token_bucket;
pub mod webhooks;
