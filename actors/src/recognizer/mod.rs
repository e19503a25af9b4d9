//! Recognizers: actors that each own one upstream recognition stream, and the factory trait the
//! supervisor uses to start them (a test passes a factory of probes).
//!
//! - [`contract`]: what every recognizer owes the supervisor (events, one end, the session
//!   clock), written once and held by each recognizer actor.
//!
//! One folder (or file) per upstream engine, named by what it talks to:
//! - [`google_v1`]: Google Speech-to-Text v1 — the recognizer actor and
//!   [`google_v1::GoogleRecognizerFactory`], with its conversions and connection pool.
//! - [`google_v2`]: Google Speech-to-Text v2 — its messages behind the same recognizer actor as v1
//!   (generic over the API version), and [`google_v2::factory`].
//! - [`google_auth`]: credentials for Google (none, or Application Default Credentials) and the
//!   call metadata. Not tied to an API version: v1 and v2 use the same tokens and headers.
//! - `local` (cargo feature `local`): the offline engines (Moonshine, PocketSphinx) — their shared
//!   inference workers, the recognizer actor and `local::SegmentRecognizerFactory`.
//! - `probe` (cargo feature `test-util`, and in this crate's tests): a factory of probe streams.

pub mod contract;
pub mod google_auth;
pub mod google_v1;
pub mod google_v2;
#[cfg(feature = "local")]
pub mod local;
#[cfg(any(test, feature = "test-util"))]
pub mod probe;

use crate::messages::{StreamHandle, StreamRequest};
use crate::protocol::Honoured;

/// Starts one recognizer actor for one upstream stream.
pub trait RecognizerFactory {
    fn start(&self, request: StreamRequest) -> StreamHandle;

    /// What this engine honours of the features a session may ask for (checked at `start`, so
    /// that nothing asked for is silently dropped).
    fn honoured(&self) -> Honoured;

    /// The upstream rejected the credentials (`UNAUTHENTICATED`): streams started from now on
    /// must use freshly fetched ones. Engines without credentials ignore it.
    fn refresh_credentials(&self) {}
}
