//! The local speech engine: offline recognition on PocketSphinx, behind the same actors as Google
//! (`[recognizer] backend = "local"`, cargo feature `local`).
//!
//! - [`ffi`]: the thin binding to PocketSphinx, loaded at run time (`libpocketsphinx.so.3`).
//! - [`engine`]: what a decoder does with one stream — streaming recognition with interim results
//!   and finals at pauses ([`engine::PocketSphinxEngine`]), behind the [`engine::SpeechEngine`]
//!   interface.
//! - [`resample`]: client audio (LINEAR16 or MULAW, 8–48 kHz) to the engine's 16 kHz samples.
//! - [`pool`]: [`LocalEngine`], the bounded pool of decoder threads a stream leases a worker from.
//! - [`recognizer`]: the recognizer actor and [`LocalRecognizerFactory`].
//! - `test_support` (cargo feature `test-util`, and in this crate's tests): Debian's test
//!   recordings and scripted engines that fail or panic on cue.
//!
//! What the server calls: [`LocalEngine::start`] once at start-up (loads the model in every
//! worker; the error names the Debian package to install), then
//! [`LocalRecognizerFactory::new`]`(engine.clone())` on each worker thread.

pub mod engine;
pub mod ffi;
pub mod pool;
pub mod recognizer;
pub mod resample;
#[cfg(any(test, feature = "test-util"))]
pub mod test_support;

pub use pool::{Busy, LocalEngine};
pub use recognizer::{LocalRecognizer, LocalRecognizerFactory};
