//! Conversions between voxgate's types and Google Speech v2's: the session's `StartConfig` into the
//! first `StreamingRecognizeRequest` (recognizer, explicit decoding, languages, features), audio into
//! the following ones, and each response into [`ApiEvent`]s on the session clock.
//!
//! v2's offsets (`result_end_offset`, word `start_offset`/`end_offset`, `speech_event_offset`)
//! count from the start of the stream's audio, as v1's times do, so a result is moved into v1's
//! shape (moving its strings, copying nothing large) and put on the session clock by v1's
//! conversion: one rule for both versions.

use bytes::Bytes;
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1;
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    explicit_decoding_config::AudioEncoding,
    phrase_set::Phrase,
    recognition_config::DecodingConfig,
    speech_adaptation::{adaptation_phrase_set, AdaptationPhraseSet},
    streaming_recognition_features::EndpointingSensitivity,
    streaming_recognize_request::StreamingRequest,
    streaming_recognize_response::SpeechEventType,
    DenoiserConfig, ExplicitDecodingConfig, PhraseSet, RecognitionConfig, RecognitionFeatures,
    SpeechAdaptation, StreamingRecognitionConfig, StreamingRecognitionFeatures,
    StreamingRecognitionResult, StreamingRecognizeRequest, StreamingRecognizeResponse,
};

use super::super::google_v1::convert::{duration_ms, transcript_from_result};
use super::super::google_v1::{ApiEvent, StreamClock};
use crate::audio::Encoding;
use crate::protocol::{Endpointing, StartConfig};

/// The model a stream asks for when the client names none: Google's own v2 streaming sample uses
/// `long`, offered in the most locations.
pub const DEFAULT_MODEL: &str = "long";

/// Google's v2 enum value for an encoding.
pub fn google_encoding(encoding: Encoding) -> AudioEncoding {
    match encoding {
        Encoding::Linear16 => AudioEncoding::Linear16,
        Encoding::Mulaw => AudioEncoding::Mulaw,
        Encoding::Alaw => AudioEncoding::Alaw,
        Encoding::Flac => AudioEncoding::Flac,
        Encoding::OggOpus => AudioEncoding::OggOpus,
        Encoding::WebmOpus => AudioEncoding::WebmOpus,
        Encoding::Amr => AudioEncoding::Amr,
        Encoding::AmrWb => AudioEncoding::AmrWb,
    }
}

/// Google v2's value for an endpointing sensitivity.
fn google_endpointing(endpointing: Endpointing) -> EndpointingSensitivity {
    match endpointing {
        Endpointing::Standard => EndpointingSensitivity::Standard,
        Endpointing::Short => EndpointingSensitivity::Short,
        Endpointing::Supershort => EndpointingSensitivity::Supershort,
    }
}

/// The first request of a stream: the recognizer and the complete configuration, no audio.
pub fn config_request(config: &StartConfig, recognizer: &str) -> StreamingRecognizeRequest {
    let adaptation = (!config.phrases.is_empty()).then(|| SpeechAdaptation {
        phrase_sets: vec![AdaptationPhraseSet {
            value: Some(adaptation_phrase_set::Value::InlinePhraseSet(PhraseSet {
                phrases: config
                    .phrases
                    .iter()
                    .map(|value| Phrase {
                        value: value.clone(),
                        boost: 0.0,
                    })
                    .collect(),
                ..PhraseSet::default()
            })),
        }],
        custom_classes: Vec::new(),
    });
    let model = if config.model.is_empty() {
        DEFAULT_MODEL.to_string()
    } else {
        config.model.clone()
    };
    let recognition = RecognitionConfig {
        model,
        language_codes: std::iter::once(&config.language_code)
            .chain(&config.features.alternative_language_codes)
            .cloned()
            .collect(),
        features: Some(RecognitionFeatures {
            enable_automatic_punctuation: config.enable_automatic_punctuation,
            enable_word_time_offsets: true,
            profanity_filter: config.features.profanity_filter,
            ..RecognitionFeatures::default()
        }),
        denoiser_config: config.features.denoise.then_some(DenoiserConfig {
            denoise_audio: true,
            // Google's default: no audio is held back for being quiet.
            snr_threshold: 0.0,
        }),
        adaptation,
        decoding_config: Some(DecodingConfig::ExplicitDecodingConfig(
            ExplicitDecodingConfig {
                encoding: google_encoding(config.format.encoding) as i32,
                sample_rate_hertz: i32::try_from(config.format.sample_rate_hz).unwrap_or(i32::MAX),
                audio_channel_count: 1,
            },
        )),
        ..RecognitionConfig::default()
    };
    StreamingRecognizeRequest {
        recognizer: recognizer.to_string(),
        streaming_request: Some(StreamingRequest::StreamingConfig(
            StreamingRecognitionConfig {
                config: Some(recognition),
                config_mask: None,
                streaming_features: Some(StreamingRecognitionFeatures {
                    interim_results: config.interim_results,
                    enable_voice_activity_events: config.features.voice_activity_events,
                    endpointing_sensitivity: config
                        .features
                        .endpointing
                        .map_or(EndpointingSensitivity::Unspecified, google_endpointing)
                        as i32,
                    ..StreamingRecognitionFeatures::default()
                }),
            },
        )),
    }
}

/// A request carrying audio (the recognizer is named in the first request only, as Google's
/// sample does).
pub fn audio_request(audio: Bytes) -> StreamingRecognizeRequest {
    StreamingRecognizeRequest {
        recognizer: String::new(),
        streaming_request: Some(StreamingRequest::Audio(audio)),
    }
}

/// A v2 result in v1's shape (same meaning, v1's field names), its strings moved.
fn as_v1_result(result: StreamingRecognitionResult) -> v1::StreamingRecognitionResult {
    v1::StreamingRecognitionResult {
        alternatives: result
            .alternatives
            .into_iter()
            .map(|alt| v1::SpeechRecognitionAlternative {
                transcript: alt.transcript,
                confidence: alt.confidence,
                words: alt
                    .words
                    .into_iter()
                    .map(|w| v1::WordInfo {
                        start_time: w.start_offset,
                        end_time: w.end_offset,
                        word: w.word,
                        confidence: w.confidence,
                        speaker_label: w.speaker_label,
                        ..v1::WordInfo::default()
                    })
                    .collect(),
            })
            .collect(),
        is_final: result.is_final,
        stability: result.stability,
        result_end_time: result.result_end_offset,
        channel_tag: result.channel_tag,
        language_code: result.language_code,
    }
}

/// What one response says, on the session clock: its speech event, its results in order, and the
/// stream's billed duration so far when the response carries it. v2 has no `error` field: a
/// failure is the status that ends the call.
pub fn events(response: StreamingRecognizeResponse, clock: StreamClock<'_>) -> Vec<ApiEvent> {
    let mut events = Vec::new();
    let event_at = || clock.origin_ms + duration_ms(response.speech_event_offset.as_ref());
    match SpeechEventType::try_from(response.speech_event_type) {
        Ok(SpeechEventType::SpeechActivityBegin) => {
            events.push(ApiEvent::SpeechStarted(event_at()))
        }
        Ok(SpeechEventType::SpeechActivityEnd) => events.push(ApiEvent::SpeechEnded(event_at())),
        Ok(SpeechEventType::EndOfSingleUtterance) => events.push(ApiEvent::EndOfSingleUtterance),
        Ok(SpeechEventType::Unspecified) | Err(_) => {}
    }
    let mut previous = clock.previous_final_end_ms;
    for result in response.results {
        let transcript = transcript_from_result(
            &as_v1_result(result),
            clock.origin_ms,
            previous,
            clock.language,
        );
        if transcript.is_final {
            previous = transcript.end_ms;
        }
        events.push(ApiEvent::Result(transcript));
    }
    if let Some(billed) = response
        .metadata
        .as_ref()
        .and_then(|m| m.total_billed_duration.as_ref())
    {
        events.push(ApiEvent::BilledMs(duration_ms(Some(billed))));
    }
    events
}
