//! The local speech engines: offline recognition behind the same actors as Google
//! (`[recognizer] backend = "local"`, cargo feature `local`), `[local] engine` choosing which.
//!
//! Moonshine (the default) decodes whole speech segments; its streams share one pool of
//! inference workers:
//! - [`moonshine`]: ONNX Runtime, the model, its tokenizer and greedy decoder.
//! - [`vad`] and [`segmenter`]: speech segments out of a stream's audio.
//! - [`scheduler`]: the shared workers — finals before interims, streams in turn, admission by
//!   measured load.
//! - [`segment_stream`] and [`segment_recognizer`]: one stream's interim and final results, and
//!   its recognizer actor ([`SegmentRecognizerFactory`]).
//!
//! PocketSphinx streams through its own decoder:
//! - [`ffi`]: the thin binding to PocketSphinx, loaded at run time (`libpocketsphinx.so.3`).
//! - [`engine`]: streaming recognition with interim results and finals at pauses
//!   ([`engine::PocketSphinxEngine`]), behind the [`engine::SpeechEngine`] interface.
//! - [`pool`]: [`LocalEngine`], the bounded pool of decoder threads a stream leases a worker from.
//! - [`recognizer`]: the recognizer actor and [`LocalRecognizerFactory`].
//! - `test_support` (cargo feature `test-util`, and in this crate's tests): Debian's test
//!   recordings and scripted engines that fail or panic on cue.
//!
//! Both use [`resample`]: client audio (LINEAR16 or MULAW, 8–48 kHz) to the engines' 16 kHz.

pub mod engine;
pub mod ffi;
pub mod moonshine;
pub mod pool;
pub mod recognizer;
pub mod resample;
pub mod scheduler;
pub mod segment_recognizer;
pub mod segment_stream;
pub mod segmenter;
#[cfg(any(test, feature = "test-util"))]
pub mod test_support;
pub mod vad;

pub use pool::{Busy, LocalEngine};
pub use recognizer::{LocalRecognizer, LocalRecognizerFactory};
pub use segment_recognizer::{SegmentEngine, SegmentRecognizerFactory};
