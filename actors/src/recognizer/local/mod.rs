//! The local speech engines: offline recognition behind the same actors as Google
//! (`[recognizer] backend = "local"`, cargo feature `local`), `[local] engine` choosing which.
//!
//! Both engines decode whole speech segments, and every stream of either shares one pool of
//! inference workers — streams are not threads:
//! - [`moonshine`]: Moonshine tiny on ONNX Runtime, the model, its tokenizer and greedy decoder
//!   (the default).
//! - [`pocketsphinx`] and [`ffi`]: PocketSphinx, decoding a segment in its batch mode, and the
//!   thin binding to its library, loaded at run time (`libpocketsphinx.so.3`).
//! - [`decoded`]: what decoding a segment gives (text, timed words where the engine has them).
//! - [`vad`] and [`segmenter`]: speech segments out of a stream's audio.
//! - [`scheduler`]: the shared workers — finals before interims, streams in turn, admission by
//!   measured load.
//! - [`segment_engine`]: a started engine made from `[local]`, and the opening of a stream.
//! - [`segment_stream`]: one stream's interim and final results.
//! - [`segment_recognizer`]: the recognizer actor ([`SegmentRecognizerFactory`]);
//!   [`engine_stream`]: the same stream driven by plain async calls (the emulator).
//! - [`resample`]: client audio (LINEAR16 or MULAW, 8–48 kHz) to the engines' 16 kHz.
//! - `test_support` (cargo feature `test-util`, and in this crate's tests): Debian's test
//!   recordings and speech-like sound.

pub mod decoded;
pub mod engine_stream;
pub mod ffi;
pub mod moonshine;
pub mod pocketsphinx;
pub mod resample;
pub mod scheduler;
pub mod segment_engine;
pub mod segment_recognizer;
pub mod segment_stream;
pub mod segmenter;
#[cfg(any(test, feature = "test-util"))]
pub mod test_support;
pub mod vad;

pub use engine_stream::EngineStream;
pub use segment_engine::SegmentEngine;
pub use segment_recognizer::SegmentRecognizerFactory;
