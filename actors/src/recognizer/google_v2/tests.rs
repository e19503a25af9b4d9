use bytes::Bytes;
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    explicit_decoding_config::AudioEncoding, recognition_config::DecodingConfig,
    speech_adaptation::adaptation_phrase_set,
    streaming_recognition_features::EndpointingSensitivity,
    streaming_recognize_request::StreamingRequest, streaming_recognize_response::SpeechEventType,
    ExplicitDecodingConfig, RecognitionResponseMetadata, SpeechRecognitionAlternative,
    StreamingRecognitionResult, WordInfo,
};

use super::convert::*;
use super::*;
use crate::protocol::{Endpointing, Features};
use crate::testing::start_config;

fn path(location: &str) -> RecognizerPath {
    RecognizerPath {
        project: "my-project".into(),
        location: location.into(),
        recognizer: "_".into(),
    }
}

fn secs(seconds: i64, millis: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds,
        nanos: millis * 1_000_000,
    })
}

#[test]
fn the_recognizer_is_named_and_routed() {
    let api = V2::new(&path("europe-west4")).expect("valid name");
    assert_eq!(
        api.recognizer(),
        "projects/my-project/locations/europe-west4/recognizers/_"
    );
    let mut request = tonic::Request::new(());
    api.add_metadata(&mut request);
    let routing = request.metadata().get("x-goog-request-params");
    assert_eq!(
        routing.and_then(|v| v.to_str().ok()),
        Some("recognizer=projects%2Fmy-project%2Flocations%2Feurope-west4%2Frecognizers%2F_")
    );
}

#[test]
fn features_map_onto_v2_fields_and_are_absent_unless_asked() {
    let request = |features| {
        let config = StartConfig {
            features,
            ..start_config()
        };
        match config_request(&config, "r").streaming_request {
            Some(StreamingRequest::StreamingConfig(streaming)) => streaming,
            other => panic!("not a config: {other:?}"),
        }
    };
    let plain = request(Features::default());
    let recognition = plain.config.clone().expect("config");
    assert_eq!(recognition.denoiser_config, None);
    assert!(!recognition.features.expect("features").profanity_filter);
    let plain_streaming = plain.streaming_features.expect("features");
    assert_eq!(
        plain_streaming.endpointing_sensitivity,
        EndpointingSensitivity::Unspecified as i32
    );
    assert!(!plain_streaming.enable_voice_activity_events);
    let asked = request(Features {
        alternative_language_codes: vec!["fr-FR".into(), "de-DE".into()],
        profanity_filter: true,
        endpointing: Some(Endpointing::Supershort),
        denoise: true,
        voice_activity_events: true,
    });
    let recognition = asked.config.clone().expect("config");
    assert_eq!(recognition.language_codes, vec!["en-US", "fr-FR", "de-DE"]);
    assert!(recognition.features.expect("features").profanity_filter);
    assert_eq!(
        recognition.denoiser_config.map(|d| d.denoise_audio),
        Some(true)
    );
    let asked_streaming = asked.streaming_features.expect("features");
    assert_eq!(
        asked_streaming.endpointing_sensitivity,
        EndpointingSensitivity::Supershort as i32
    );
    assert!(asked_streaming.enable_voice_activity_events);
}

#[test]
fn the_first_request_carries_recognizer_and_complete_config() {
    let config = StartConfig {
        phrases: vec!["voxgate".into()],
        enable_automatic_punctuation: true,
        ..start_config()
    };
    let request = config_request(&config, "projects/p/locations/global/recognizers/_");
    assert_eq!(
        request.recognizer,
        "projects/p/locations/global/recognizers/_"
    );
    let Some(StreamingRequest::StreamingConfig(streaming)) = request.streaming_request else {
        panic!("the first request carries the streaming config");
    };
    let recognition = streaming.config.expect("config");
    assert_eq!(recognition.model, DEFAULT_MODEL);
    assert_eq!(recognition.language_codes, vec!["en-US"]);
    assert_eq!(
        recognition.decoding_config,
        Some(DecodingConfig::ExplicitDecodingConfig(
            ExplicitDecodingConfig {
                encoding: AudioEncoding::Linear16 as i32,
                sample_rate_hertz: 16_000,
                audio_channel_count: 1,
            }
        ))
    );
    let features = recognition.features.expect("features");
    assert!(features.enable_word_time_offsets && features.enable_automatic_punctuation);
    let phrases = recognition.adaptation.expect("adaptation").phrase_sets;
    let Some(adaptation_phrase_set::Value::InlinePhraseSet(set)) = &phrases[0].value else {
        panic!("phrases go inline");
    };
    assert_eq!(set.phrases[0].value, "voxgate");
    assert!(
        streaming
            .streaming_features
            .expect("features")
            .interim_results
    );
    let audio = audio_request(Bytes::from_static(&[1, 2, 3]));
    assert_eq!(audio.recognizer, "");
    assert_eq!(
        audio.streaming_request,
        Some(StreamingRequest::Audio(Bytes::from_static(&[1, 2, 3])))
    );
}

#[test]
fn offsets_land_on_the_session_clock() {
    let clock = StreamClock {
        origin_ms: 10_000,
        previous_final_end_ms: 10_000,
        language: "en-US",
    };
    let word = |w: &str, start: i32, end: i32| WordInfo {
        start_offset: secs(0, start),
        end_offset: secs(0, end),
        word: w.into(),
        confidence: 0.9,
        ..WordInfo::default()
    };
    let response = StreamingRecognizeResponse {
        results: vec![StreamingRecognitionResult {
            alternatives: vec![SpeechRecognitionAlternative {
                transcript: "hello world".into(),
                confidence: 0.9,
                words: vec![word("hello", 100, 400), word("world", 500, 900)],
            }],
            is_final: true,
            result_end_offset: secs(1, 200),
            language_code: "fr-FR".into(),
            ..StreamingRecognitionResult::default()
        }],
        metadata: Some(RecognitionResponseMetadata {
            total_billed_duration: secs(2, 0),
            ..RecognitionResponseMetadata::default()
        }),
        ..StreamingRecognizeResponse::default()
    };
    let events = events(response, clock);
    let [ApiEvent::Result(t), ApiEvent::BilledMs(2_000)] = events.as_slice() else {
        panic!("a result then the billed duration: {events:?}");
    };
    assert!(t.is_final);
    assert_eq!((t.start_ms, t.end_ms), (10_100, 11_200));
    assert_eq!((t.words[1].start_ms, t.words[1].end_ms), (10_500, 10_900));
    assert_eq!(t.language_code, "fr-FR");
    assert_eq!(t.transcript, "hello world");
}

#[test]
fn speech_events_come_with_their_time() {
    let clock = StreamClock {
        origin_ms: 3_000,
        previous_final_end_ms: 3_000,
        language: "en-US",
    };
    let event = |kind: SpeechEventType, millis| StreamingRecognizeResponse {
        speech_event_type: kind as i32,
        speech_event_offset: secs(0, millis),
        ..StreamingRecognizeResponse::default()
    };
    assert_eq!(
        events(event(SpeechEventType::SpeechActivityBegin, 250), clock),
        vec![ApiEvent::SpeechStarted(3_250)]
    );
    assert_eq!(
        events(event(SpeechEventType::SpeechActivityEnd, 750), clock),
        vec![ApiEvent::SpeechEnded(3_750)]
    );
    assert!(events(StreamingRecognizeResponse::default(), clock).is_empty());
}
