//! Tests of the conversions between voxgate's types and Google v1's.

use bytes::Bytes;
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    SpeechRecognitionAlternative, WordInfo,
};
use googleapis_tonic_google_cloud_speech_v1::google::rpc::Status;

use super::*;
use crate::audio::AudioFormat;

fn dur(ms: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: ms / 1_000,
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    })
}

fn start_config() -> StartConfig {
    StartConfig {
        format: AudioFormat {
            encoding: Encoding::Mulaw,
            sample_rate_hz: 8_000,
        },
        language_code: "de-DE".into(),
        interim_results: true,
        enable_automatic_punctuation: true,
        model: "phone_call".into(),
        phrases: vec!["voxgate".into(), "Kaffee".into()],
        single_utterance: false,
        features: Default::default(),
        frame_ms: None,
    }
}

/// The first request carries the whole configuration and no audio.
#[test]
fn config_request_carries_the_session_configuration() {
    let request = config_request(&start_config());
    let Some(StreamingRequest::StreamingConfig(streaming)) = request.streaming_request else {
        panic!("first request must be a streaming config");
    };
    assert!(streaming.interim_results);
    assert!(!streaming.single_utterance);
    let config = streaming.config.unwrap_or_default();
    assert_eq!(config.encoding, AudioEncoding::Mulaw as i32);
    assert_eq!(config.sample_rate_hertz, 8_000);
    assert_eq!(config.language_code, "de-DE");
    assert!(config.enable_automatic_punctuation);
    assert!(config.enable_word_time_offsets);
    assert_eq!(config.model, "phone_call");
    assert_eq!(config.speech_contexts.len(), 1);
    assert_eq!(config.speech_contexts[0].phrases, vec!["voxgate", "Kaffee"]);
}

/// No phrases, no speech context; every encoding maps to Google's value of the same name.
#[test]
fn no_phrases_no_context_and_encodings_map_by_name() {
    let mut c = start_config();
    c.phrases.clear();
    c.single_utterance = true;
    let Some(StreamingRequest::StreamingConfig(streaming)) = config_request(&c).streaming_request
    else {
        panic!("first request must be a streaming config");
    };
    assert!(streaming.single_utterance);
    assert!(streaming
        .config
        .unwrap_or_default()
        .speech_contexts
        .is_empty());
    for e in Encoding::ALL {
        let name = google_encoding(e).as_str_name();
        if e == Encoding::Alaw {
            // v1 has no A-law (refused at `start` for v1); never sent as something else.
            assert_eq!(name, "ENCODING_UNSPECIFIED");
        } else {
            assert_eq!(name, e.as_str());
        }
    }
}

/// Audio requests carry the bytes unchanged.
#[test]
fn audio_request_carries_bytes() {
    let r = audio_request(Bytes::from_static(&[1, 2, 3]));
    assert_eq!(
        r.streaming_request,
        Some(StreamingRequest::AudioContent(Bytes::from_static(&[
            1, 2, 3
        ])))
    );
}

fn result(is_final: bool, end_ms: i64, words: &[(&str, i64, i64)]) -> StreamingRecognitionResult {
    StreamingRecognitionResult {
        alternatives: vec![SpeechRecognitionAlternative {
            transcript: words.iter().map(|w| w.0).collect::<Vec<_>>().join(" "),
            confidence: if is_final { 0.93 } else { 0.0 },
            words: words
                .iter()
                .map(|(w, s, e)| WordInfo {
                    start_time: dur(*s),
                    end_time: dur(*e),
                    word: (*w).into(),
                    confidence: 0.8,
                    ..WordInfo::default()
                })
                .collect(),
        }],
        is_final,
        stability: if is_final { 0.0 } else { 0.7 },
        result_end_time: dur(end_ms),
        ..StreamingRecognitionResult::default()
    }
}

/// Every time is shifted by the stream's origin on the session clock.
#[test]
fn result_times_are_shifted_onto_the_session_clock() {
    let r = result(true, 1_850, &[("hello", 300, 700), ("world", 800, 1_750)]);
    let t = transcript_from_result(&r, 60_000, 60_000, "en-US");
    assert!(t.is_final);
    assert_eq!(t.transcript, "hello world");
    assert_eq!((t.start_ms, t.end_ms), (60_300, 61_850));
    assert_eq!(
        t.words
            .iter()
            .map(|w| (w.start_ms, w.end_ms))
            .collect::<Vec<_>>(),
        vec![(60_300, 60_700), (60_800, 61_750)]
    );
    assert_eq!(t.confidence, 0.93);
    assert_eq!(t.stability, 0.0);
    assert_eq!(t.language_code, "en-US");
}

/// Without words a result starts where this stream's last final ended.
#[test]
fn wordless_result_starts_at_the_previous_final() {
    let r = result(false, 2_500, &[]);
    let t = transcript_from_result(&r, 10_000, 11_200, "en-US");
    assert_eq!((t.start_ms, t.end_ms), (11_200, 12_500));
    assert_eq!(t.stability, 0.7);
    assert!(!t.is_final);
}

/// A result with no alternatives is an empty transcript, not a panic; Google's language code
/// wins over the default.
#[test]
fn empty_result_is_tolerated() {
    let r = StreamingRecognitionResult {
        is_final: true,
        language_code: "en-gb".into(),
        ..StreamingRecognitionResult::default()
    };
    let t = transcript_from_result(&r, 5_000, 5_000, "en-US");
    assert_eq!(t.transcript, "");
    assert_eq!((t.start_ms, t.end_ms), (5_000, 5_000));
    assert_eq!(t.language_code, "en-gb");
}

/// Durations round down to the millisecond; negative ones count as zero.
#[test]
fn durations_convert_to_milliseconds() {
    let d = prost_types::Duration {
        seconds: 2,
        nanos: 999_999_999,
    };
    assert_eq!(duration_ms(Some(&d)), 2_999);
    let d = prost_types::Duration {
        seconds: -1,
        nanos: 0,
    };
    assert_eq!(duration_ms(Some(&d)), 0);
    assert_eq!(duration_ms(None), 0);
}

/// `response.error` becomes a failure with Google's code and message; a zero code is no error.
#[test]
fn response_errors_map_to_failures() {
    let mut response = StreamingRecognizeResponse {
        error: Some(Status {
            code: 11,
            message: "Exceeded maximum allowed stream duration of 305 seconds.".into(),
            details: Vec::new(),
        }),
        ..StreamingRecognizeResponse::default()
    };
    assert_eq!(
        failure_from_response(&response),
        Some(StreamFailure {
            code: tonic::Code::OutOfRange,
            message: "Exceeded maximum allowed stream duration of 305 seconds.".into(),
        })
    );
    response.error = Some(Status::default());
    assert_eq!(failure_from_response(&response), None);
    response.error = None;
    assert_eq!(failure_from_response(&response), None);
}

/// gRPC statuses keep their code and message; `OK` as an error is `UNKNOWN`.
#[test]
fn grpc_statuses_map_to_failures() {
    let f = failure_from_status(&tonic::Status::invalid_argument("bad sample rate"));
    assert_eq!(
        (f.code, f.message.as_str()),
        (tonic::Code::InvalidArgument, "bad sample rate")
    );
    let f = failure_from_status(&tonic::Status::new(tonic::Code::Ok, "no trailers"));
    assert_eq!(f.code, tonic::Code::Unknown);
}

/// A call hyper cancels because its connection closed before sending it never reached the
/// upstream: it is `UNAVAILABLE` (retried), while a `CANCELLED` from the upstream stays final.
#[tokio::test]
async fn a_call_cancelled_by_a_closed_connection_is_unavailable() {
    let (client_io, _server_io) = tokio::io::duplex(64 * 1024);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(client_io),
        )
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    drop(connection); // the connection ends before the request is sent
    let request = http::Request::new(http_body_util::Empty::new());
    let Err(error) = sender.send_request(request).await else {
        panic!("a request on a closed connection was answered");
    };
    assert!(error.is_canceled(), "{error}");
    let status = tonic::Status::from_error(Box::new(error));
    assert_eq!(status.code(), tonic::Code::Cancelled, "as tonic reports it");
    let f = failure_from_status(&status);
    assert_eq!(f.code, tonic::Code::Unavailable, "{}", f.message);

    let f = failure_from_status(&tonic::Status::cancelled("cancelled by the server"));
    assert_eq!(f.code, tonic::Code::Cancelled);
}

/// The single-utterance speech event is recognised; others are not.
#[test]
fn end_of_single_utterance_is_recognised() {
    let mut r = StreamingRecognizeResponse {
        speech_event_type: SpeechEventType::EndOfSingleUtterance as i32,
        ..StreamingRecognizeResponse::default()
    };
    assert!(is_end_of_single_utterance(&r));
    r.speech_event_type = SpeechEventType::SpeechActivityBegin as i32;
    assert!(!is_end_of_single_utterance(&r));
}
