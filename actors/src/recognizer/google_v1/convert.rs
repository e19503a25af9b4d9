//! Conversions between voxgate's types and Google Speech v1's: the session's `StartConfig` into the
//! first `StreamingRecognizeRequest`, audio into the following ones, each
//! `StreamingRecognitionResult` into a [`Transcript`] on the session clock, and Google's errors into
//! a [`StreamFailure`]. Pure functions, so the recognizer actor stays thin and these are tested
//! alone.
//!
//! Google's `result_end_time` and word offsets count from the start of *this stream's* audio. The
//! gateway knows where on the session clock the stream's first frame started (its origin), so
//! every time is shifted by it; after a restart with replay the new stream's origin is the end of
//! the last final result, and the times continue seamlessly.

use bytes::Bytes;
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    recognition_config::AudioEncoding, streaming_recognize_request::StreamingRequest,
    streaming_recognize_response::SpeechEventType, RecognitionConfig, SpeechContext,
    StreamingRecognitionConfig, StreamingRecognitionResult, StreamingRecognizeRequest,
    StreamingRecognizeResponse,
};

use crate::audio::Encoding;
use crate::messages::{StreamFailure, Transcript, WordTiming};
use crate::protocol::StartConfig;

/// Google's enum value for an encoding. v1 has no A-law: a v1 upstream refuses `ALAW` at `start`
/// (`Honoured::check`), so it never reaches here; were it to, Google would refuse the unspecified
/// encoding rather than misread the audio.
pub fn google_encoding(encoding: Encoding) -> AudioEncoding {
    match encoding {
        Encoding::Linear16 => AudioEncoding::Linear16,
        Encoding::Mulaw => AudioEncoding::Mulaw,
        Encoding::Alaw => AudioEncoding::EncodingUnspecified,
        Encoding::Flac => AudioEncoding::Flac,
        Encoding::OggOpus => AudioEncoding::OggOpus,
        Encoding::WebmOpus => AudioEncoding::WebmOpus,
        Encoding::Amr => AudioEncoding::Amr,
        Encoding::AmrWb => AudioEncoding::AmrWb,
    }
}

/// The first request of a stream: the recognition configuration, no audio.
pub fn config_request(config: &StartConfig) -> StreamingRecognizeRequest {
    let speech_contexts = if config.phrases.is_empty() {
        Vec::new()
    } else {
        vec![SpeechContext {
            phrases: config.phrases.clone(),
            ..SpeechContext::default()
        }]
    };
    let recognition = RecognitionConfig {
        encoding: google_encoding(config.format.encoding) as i32,
        sample_rate_hertz: i32::try_from(config.format.sample_rate_hz).unwrap_or(i32::MAX),
        language_code: config.language_code.clone(),
        enable_automatic_punctuation: config.enable_automatic_punctuation,
        enable_word_time_offsets: true,
        model: config.model.clone(),
        speech_contexts,
        alternative_language_codes: config.features.alternative_language_codes.clone(),
        profanity_filter: config.features.profanity_filter,
        ..RecognitionConfig::default()
    };
    StreamingRecognizeRequest {
        streaming_request: Some(StreamingRequest::StreamingConfig(
            StreamingRecognitionConfig {
                config: Some(recognition),
                single_utterance: config.single_utterance,
                interim_results: config.interim_results,
                ..StreamingRecognitionConfig::default()
            },
        )),
    }
}

/// A request carrying audio: the frame's shared bytes, encoded straight into the call's buffer.
pub fn audio_request(audio: Bytes) -> StreamingRecognizeRequest {
    StreamingRecognizeRequest {
        streaming_request: Some(StreamingRequest::AudioContent(audio)),
    }
}

/// A protobuf duration in whole milliseconds (negative counts as zero).
pub fn duration_ms(d: Option<&prost_types::Duration>) -> u64 {
    let Some(d) = d else { return 0 };
    let ms = d
        .seconds
        .saturating_mul(1_000)
        .saturating_add(i64::from(d.nanos / 1_000_000));
    u64::try_from(ms).unwrap_or(0)
}

/// One result on the session clock. `origin_ms` is where this stream's audio started;
/// `previous_final_end_ms` the end of this stream's last final (or the origin): a result without
/// words starts there, since it covers the audio after the last final.
pub fn transcript_from_result(
    result: &StreamingRecognitionResult,
    origin_ms: u64,
    previous_final_end_ms: u64,
    default_language: &str,
) -> Transcript {
    let best = result.alternatives.first();
    let words: Vec<WordTiming> = best
        .map(|alt| {
            alt.words
                .iter()
                .map(|w| WordTiming {
                    word: w.word.clone(),
                    start_ms: origin_ms + duration_ms(w.start_time.as_ref()),
                    end_ms: origin_ms + duration_ms(w.end_time.as_ref()),
                    confidence: w.confidence,
                })
                .collect()
        })
        .unwrap_or_default();
    let end_ms = match result.result_end_time.as_ref() {
        Some(d) => origin_ms + duration_ms(Some(d)),
        None => previous_final_end_ms,
    };
    let start_ms = words
        .first()
        .map_or(previous_final_end_ms, |w| w.start_ms)
        .min(end_ms);
    let language_code = if result.language_code.is_empty() {
        default_language.to_string()
    } else {
        result.language_code.clone()
    };
    Transcript {
        is_final: result.is_final,
        transcript: best.map(|a| a.transcript.clone()).unwrap_or_default(),
        confidence: best.map_or(0.0, |a| a.confidence),
        stability: if result.is_final {
            0.0
        } else {
            result.stability
        },
        start_ms,
        end_ms,
        words,
        language_code,
    }
}

/// The failure a response carries in its `error` field, if any.
pub fn failure_from_response(response: &StreamingRecognizeResponse) -> Option<StreamFailure> {
    let status = response.error.as_ref()?;
    if status.code == 0 {
        return None;
    }
    Some(StreamFailure {
        code: tonic::Code::from(status.code),
        message: status.message.clone(),
    })
}

/// A gRPC status as a stream failure. A status `OK` here (tonic reports a missing trailer so)
/// is not a clean end: it becomes `UNKNOWN`. A `CANCELLED` that our own HTTP/2 client raised
/// (the call was queued on a connection that closed before sending it: the upstream never saw
/// it) is the transport failing, so it becomes `UNAVAILABLE` and is retried; a `CANCELLED` the
/// upstream sent keeps its code.
pub fn failure_from_status(status: &tonic::Status) -> StreamFailure {
    let code = match status.code() {
        tonic::Code::Ok => tonic::Code::Unknown,
        tonic::Code::Cancelled if cancelled_by_our_connection(status) => tonic::Code::Unavailable,
        code => code,
    };
    StreamFailure {
        code,
        message: status.message().to_string(),
    }
}

/// Whether hyper cancelled the call because its connection closed: a cancelled `hyper::Error`
/// in the status' sources (a status received from the upstream has none).
fn cancelled_by_our_connection(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// Whether the response signals the end of a single utterance.
pub fn is_end_of_single_utterance(response: &StreamingRecognizeResponse) -> bool {
    response.speech_event_type == SpeechEventType::EndOfSingleUtterance as i32
}

#[cfg(test)]
mod tests;
