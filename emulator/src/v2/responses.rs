//! Recognition events → v2 response messages: results (offsets from the start of the stream's
//! audio, the detected language), voice-activity events from the synthetic audio's pauses, and the
//! billed duration.
//!
//! Language detection in synthetic audio: with several `language_codes`, an utterance whose first
//! word is the primary subtag of one of them (`fr` for `fr-FR`) is reported in that language; any
//! other utterance in the first language given. The marker is an ordinary spoken word, so it stays in
//! the transcript (`voxgate emulator encode "fr bonjour."` → `fr bonjour`, `language_code` `fr-FR`).

use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    streaming_recognize_response::SpeechEventType, RecognitionResponseMetadata,
    SpeechRecognitionAlternative, StreamingRecognitionResult, StreamingRecognizeResponse, WordInfo,
};

use super::rules::ResponseOptions;
use crate::responses::{result_scores, result_words, samples_to_duration};
use crate::rules::AcceptedConfig;
use crate::synth::Recognition;

/// The language an utterance is reported in (see the module doc).
pub fn detected_language<'a>(recognition: &Recognition, languages: &'a [String]) -> &'a str {
    let first_word = recognition.words.first().map(|w| w.word.as_str());
    let marked = languages.iter().find(|tag| {
        let primary = tag.split('-').next().unwrap_or_default();
        languages.len() > 1 && first_word == Some(primary)
    });
    marked.or(languages.first()).map_or("", String::as_str)
}

/// The billed duration of a stream with `samples` of audio so far: whole seconds, rounded up.
pub fn billed(samples: u64, rate: u32) -> prost_types::Duration {
    let rate = u64::from(rate.max(1));
    prost_types::Duration {
        seconds: samples.div_ceil(rate) as i64,
        nanos: 0,
    }
}

/// One result, as v1's but with v2's field names, the detected language, and (for a final) the
/// billed duration so far.
pub fn result_response(
    recognition: &Recognition,
    config: &AcceptedConfig,
    options: &ResponseOptions,
) -> StreamingRecognizeResponse {
    let rate = config.sample_rate_hz;
    let words = result_words(recognition, config)
        .into_iter()
        .map(|w| WordInfo {
            start_offset: w.start,
            end_offset: w.end,
            word: w.word,
            confidence: w.confidence,
            ..Default::default()
        })
        .collect();
    let (confidence, stability) = result_scores(recognition);
    StreamingRecognizeResponse {
        results: vec![StreamingRecognitionResult {
            alternatives: vec![SpeechRecognitionAlternative {
                transcript: recognition.transcript(),
                confidence,
                words,
            }],
            is_final: recognition.is_final,
            stability,
            result_end_offset: Some(samples_to_duration(recognition.end_sample, rate)),
            channel_tag: 0,
            language_code: detected_language(recognition, &options.languages).to_string(),
        }],
        metadata: recognition.is_final.then(|| RecognitionResponseMetadata {
            total_billed_duration: Some(billed(recognition.end_sample, rate)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A speech event at `at_sample` of the stream's audio.
pub fn speech_event(
    kind: SpeechEventType,
    at_sample: u64,
    rate: u32,
) -> StreamingRecognizeResponse {
    StreamingRecognizeResponse {
        speech_event_type: kind as i32,
        speech_event_offset: Some(samples_to_duration(at_sample, rate)),
        ..Default::default()
    }
}
