//! Recognizers: actors that each own one upstream recognition stream, and the factory trait the
//! supervisor uses to start them (a test passes a factory of probes).
//!
//! - [`google`]: the Google Speech v1 recognizer actor and [`google::GoogleRecognizerFactory`].
//! - [`google_convert`]: configuration, results and errors between voxgate's types and Google's.
//! - [`google_auth`]: credentials (none, or Application Default Credentials) and call metadata.
//! - [`google_pool`]: the per-worker-thread pool of HTTP/2 connections to Google.
//! - `local` (cargo feature `local`): the offline PocketSphinx engine — its decoder pool, the
//!   recognizer actor and `local::LocalRecognizerFactory`.
//! - `probe` (cargo feature `test-util`, and in this crate's tests): a factory of probe streams.

pub mod google;
pub mod google_auth;
pub mod google_convert;
pub mod google_pool;
#[cfg(feature = "local")]
pub mod local;
#[cfg(any(test, feature = "test-util"))]
pub mod probe;

use crate::messages::{StreamHandle, StreamRequest};

/// Starts one recognizer actor for one upstream stream.
pub trait RecognizerFactory {
    fn start(&self, request: StreamRequest) -> StreamHandle;

    /// The upstream rejected the credentials (`UNAUTHENTICATED`): streams started from now on
    /// must use freshly fetched ones. Engines without credentials ignore it.
    fn refresh_credentials(&self) {}
}
