//! Recognition events → Google's response messages (`StreamingRecognizeResponse`), with times as
//! offsets from the start of the stream's audio, as Google gives them.

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    streaming_recognize_response::SpeechEventType, SpeechRecognitionAlternative,
    StreamingRecognitionResult, StreamingRecognizeResponse, WordInfo,
};

use super::rules::AcceptedConfig;
use super::synth::Recognition;

/// Stability of every interim result (how likely it is to change; the synthetic recogniser only
/// ever extends its hypothesis).
pub const INTERIM_STABILITY: f32 = 0.5;

/// `samples` at `rate` Hz as a protobuf duration (exact to the nanosecond, rounded down).
pub fn samples_to_duration(samples: u64, rate: u32) -> prost_types::Duration {
    let rate = u64::from(rate.max(1));
    let nanos = (u128::from(samples % rate) * 1_000_000_000 / u128::from(rate)) as i32;
    prost_types::Duration {
        seconds: (samples / rate) as i64,
        nanos,
    }
}

/// A word of a final as every API version reports it: its times (when word time offsets were asked
/// for) and its confidence (when word confidence was).
pub struct WordParts {
    pub start: Option<prost_types::Duration>,
    pub end: Option<prost_types::Duration>,
    pub word: String,
    pub confidence: f32,
}

/// The words a result lists: a final's, when word time offsets or word confidence were asked for.
pub fn result_words(recognition: &Recognition, config: &AcceptedConfig) -> Vec<WordParts> {
    let rate = config.sample_rate_hz;
    if !(recognition.is_final && (config.word_time_offsets || config.word_confidence)) {
        return Vec::new();
    }
    let times = config.word_time_offsets;
    recognition
        .words
        .iter()
        .map(|w| WordParts {
            start: times.then(|| samples_to_duration(w.start_sample, rate)),
            end: times.then(|| samples_to_duration(w.end_sample, rate)),
            word: w.word.clone(),
            confidence: if config.word_confidence {
                w.confidence
            } else {
                0.0
            },
        })
        .collect()
}

/// A result's `(confidence, stability)`: a final has a confidence, an interim a stability.
pub fn result_scores(recognition: &Recognition) -> (f32, f32) {
    if recognition.is_final {
        (recognition.confidence(), 0.0)
    } else {
        (0.0, INTERIM_STABILITY)
    }
}

/// One result: an interim (transcript so far, `stability`, no confidence, no words) or a final
/// (`confidence`, and word infos when word time offsets or word confidence were asked for).
pub fn result_response(
    recognition: &Recognition,
    config: &AcceptedConfig,
) -> StreamingRecognizeResponse {
    let rate = config.sample_rate_hz;
    let words = result_words(recognition, config)
        .into_iter()
        .map(|w| WordInfo {
            start_time: w.start,
            end_time: w.end,
            word: w.word,
            confidence: w.confidence,
            ..Default::default()
        })
        .collect();
    let (confidence, stability) = result_scores(recognition);
    let alternative = SpeechRecognitionAlternative {
        transcript: recognition.transcript(),
        confidence,
        words,
    };
    StreamingRecognizeResponse {
        results: vec![StreamingRecognitionResult {
            alternatives: vec![alternative],
            is_final: recognition.is_final,
            stability,
            result_end_time: Some(samples_to_duration(recognition.end_sample, rate)),
            channel_tag: 0,
            language_code: config.language_code.to_ascii_lowercase(),
        }],
        ..Default::default()
    }
}

/// `END_OF_SINGLE_UTTERANCE`, at `at_sample` of the stream's audio.
pub fn end_of_single_utterance(at_sample: u64, rate: u32) -> StreamingRecognizeResponse {
    StreamingRecognizeResponse {
        speech_event_type: SpeechEventType::EndOfSingleUtterance as i32,
        speech_event_time: Some(samples_to_duration(at_sample, rate)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact_for_whole_sample_rates() {
        let d = samples_to_duration(16_000 * 3 + 8, 16_000);
        assert_eq!((d.seconds, d.nanos), (3, 500_000));
        let d = samples_to_duration(44_100 + 1, 44_100);
        assert_eq!((d.seconds, d.nanos), (1, 22_675));
    }
}
