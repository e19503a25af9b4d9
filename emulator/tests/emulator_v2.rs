//! The emulator's v2 service as a v2 client sees it: a real server on 127.0.0.1:0 reached with the
//! googleapis v2 `SpeechClient` — the recognizer and config rules, exact results with v2 offsets,
//! voice-activity events at the synthetic audio's pauses and their timeouts, language detection,
//! billed duration, A-law, v2's duration-limit status, and `--apis` serving one version only (the
//! other is UNIMPLEMENTED).

use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    explicit_decoding_config::AudioEncoding, recognition_config::DecodingConfig,
    speech_client::SpeechClient, streaming_recognition_features::VoiceActivityTimeout,
    streaming_recognize_request::StreamingRequest, streaming_recognize_response::SpeechEventType,
    ExplicitDecodingConfig, RecognitionConfig, RecognitionFeatures, StreamingRecognitionConfig,
    StreamingRecognitionFeatures, StreamingRecognizeRequest, StreamingRecognizeResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;
use voxgate_emulator::synth::{self, SynthEncoding};
use voxgate_emulator::{Apis, EmulatorConfig};

mod common;

use common::{start, within};

const GLOBAL: &str = "projects/p/locations/global/recognizers/_";

async fn client_v2(endpoint: String) -> SpeechClient<Channel> {
    let channel = Channel::from_shared(endpoint)
        .expect("valid endpoint")
        .connect()
        .await
        .expect("connect to the emulator");
    SpeechClient::new(channel)
}

fn config_request(recognizer: &str, languages: &[&str], vad: bool) -> StreamingRecognizeRequest {
    StreamingRecognizeRequest {
        recognizer: recognizer.to_string(),
        streaming_request: Some(StreamingRequest::StreamingConfig(
            StreamingRecognitionConfig {
                config: Some(RecognitionConfig {
                    model: "long".to_string(),
                    language_codes: languages.iter().map(|l| l.to_string()).collect(),
                    features: Some(RecognitionFeatures {
                        enable_word_time_offsets: true,
                        ..Default::default()
                    }),
                    decoding_config: Some(DecodingConfig::ExplicitDecodingConfig(
                        ExplicitDecodingConfig {
                            encoding: AudioEncoding::Linear16 as i32,
                            sample_rate_hertz: 16_000,
                            audio_channel_count: 1,
                        },
                    )),
                    ..Default::default()
                }),
                streaming_features: Some(StreamingRecognitionFeatures {
                    enable_voice_activity_events: vad,
                    interim_results: true,
                    ..Default::default()
                }),
                config_mask: None,
            },
        )),
    }
}

/// Sends `first`, then `audio` in 100 ms requests at once, then half-closes (unless `hold`);
/// returns the responses and how the call ended.
async fn call(
    client: &mut SpeechClient<Channel>,
    first: StreamingRecognizeRequest,
    audio: &[u8],
    hold: bool,
) -> (Vec<StreamingRecognizeResponse>, Result<(), tonic::Status>) {
    let (tx, rx) = mpsc::channel(8);
    let chunks: Vec<Vec<u8>> = audio.chunks(3_200).map(<[u8]>::to_vec).collect();
    let sender = tokio::spawn(async move {
        let requests =
            std::iter::once(first).chain(chunks.into_iter().map(|c| StreamingRecognizeRequest {
                recognizer: String::new(),
                streaming_request: Some(StreamingRequest::Audio(c.into())),
            }));
        for request in requests {
            if tx.send(request).await.is_err() {
                return;
            }
        }
        if hold {
            tx.closed().await;
        }
    });
    let mut responses = Vec::new();
    let end = match client.streaming_recognize(ReceiverStream::new(rx)).await {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(r)) => responses.push(r),
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            }
        }
        Err(status) => Err(status),
    };
    sender.abort();
    (responses, end)
}

/// Finals exact with v2 offsets, detected languages, speech events around each utterance at the
/// audio's word boundaries, and the billed duration on every final.
#[tokio::test]
async fn results_events_and_languages_are_exact() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client_v2(emulator.endpoint()).await;
        let text = "hello there. fr bonjour le monde.";
        let encoded = synth::encode_with_timeline(text, 16_000, SynthEncoding::Linear16);
        let first = config_request(GLOBAL, &["en-us", "fr-FR"], true);
        let (responses, end) = call(&mut client, first, &encoded.audio, false).await;
        assert_eq!(end.map_err(|s| s.code()), Ok(()));
        let finals: Vec<_> = responses
            .iter()
            .flat_map(|r| &r.results)
            .filter(|r| r.is_final)
            .collect();
        let texts: Vec<(&str, &str)> = finals
            .iter()
            .map(|r| {
                (
                    r.alternatives[0].transcript.as_str(),
                    r.language_code.as_str(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            vec![("hello there", "en-US"), ("fr bonjour le monde", "fr-FR")]
        );
        let to_ms = |d: Option<&prost_types::Duration>| {
            d.map_or(u64::MAX, |d| {
                d.seconds as u64 * 1000 + d.nanos as u64 / 1_000_000
            })
        };
        let words: Vec<_> = finals
            .iter()
            .flat_map(|r| &r.alternatives[0].words)
            .collect();
        assert_eq!(words.len(), encoded.words.len());
        // The decoder finds a word's edges within 2 ms of the encoder's.
        let near = |got: u64, want: u64| got.abs_diff(want) <= 2;
        for (got, want) in words.iter().zip(&encoded.words) {
            assert_eq!(got.word, want.word);
            let (start, end) = (
                to_ms(got.start_offset.as_ref()),
                to_ms(got.end_offset.as_ref()),
            );
            assert!(near(start, want.start_sample / 16), "{got:?} vs {want:?}");
            assert!(near(end, want.end_sample / 16), "{got:?} vs {want:?}");
        }
        let events: Vec<(i32, u64)> = responses
            .iter()
            .filter(|r| r.speech_event_type != 0)
            .map(|r| (r.speech_event_type, to_ms(r.speech_event_offset.as_ref())))
            .collect();
        let (begin, end) = (
            SpeechEventType::SpeechActivityBegin as i32,
            SpeechEventType::SpeechActivityEnd as i32,
        );
        let w = &encoded.words;
        let expected = [
            (begin, w[0].start_sample / 16),
            (end, w[1].end_sample / 16),
            (begin, w[2].start_sample / 16),
            (end, w[5].end_sample / 16),
        ];
        assert_eq!(events.len(), expected.len(), "{events:?}");
        for (got, want) in events.iter().zip(&expected) {
            assert!(
                got.0 == want.0 && near(got.1, want.1),
                "{events:?} vs {expected:?}"
            );
        }
        for (i, response) in responses.iter().enumerate() {
            let is_final = response.results.iter().any(|r| r.is_final);
            let billed = response
                .metadata
                .as_ref()
                .and_then(|m| m.total_billed_duration);
            assert_eq!(
                billed.is_some(),
                is_final,
                "response {i}: billed with finals"
            );
            if let (true, Some(billed), Some(result)) = (is_final, billed, response.results.first())
            {
                let end = to_ms(result.result_end_offset.as_ref());
                assert_eq!(billed.seconds as u64, end.div_ceil(1_000));
            }
        }
    })
    .await;
}

/// `config_request` with voice-activity events and these timeouts (ms; `None`: unset).
fn with_timeouts(start_ms: Option<u64>, end_ms: Option<u64>) -> StreamingRecognizeRequest {
    let duration = |ms: u64| prost_types::Duration {
        seconds: (ms / 1_000) as i64,
        nanos: (ms % 1_000) as i32 * 1_000_000,
    };
    let mut request = config_request(GLOBAL, &["en-US"], true);
    if let Some(StreamingRequest::StreamingConfig(config)) = request.streaming_request.as_mut() {
        if let Some(features) = config.streaming_features.as_mut() {
            features.voice_activity_timeout = Some(VoiceActivityTimeout {
                speech_start_timeout: start_ms.map(duration),
                speech_end_timeout: end_ms.map(duration),
            });
        }
    }
    request
}

/// 16 kHz LINEAR16 silence.
fn silence_ms(ms: usize) -> Vec<u8> {
    vec![0; ms * 32]
}

fn final_texts(responses: &[StreamingRecognizeResponse]) -> Vec<String> {
    responses
        .iter()
        .flat_map(|r| &r.results)
        .filter(|r| r.is_final)
        .map(|r| r.alternatives[0].transcript.clone())
        .collect()
}

/// `speech_start_timeout`: no speech begun that far into the audio closes the stream (OK, with
/// nothing recognised, though the client keeps it open and speech follows); speech begun in time
/// keeps it open. `speech_end_timeout`: that long without new speech after speech ended closes
/// it, after the final of what was said; a pause shorter than it does not.
#[tokio::test]
async fn voice_activity_timeouts_close_the_stream() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client_v2(emulator.endpoint()).await;
        let words = |text: &str| synth::encode(text, 16_000, SynthEncoding::Linear16);

        // 1.5 s of silence, then speech: a 1 s start timeout closes the stream first.
        let mut late = silence_ms(1_500);
        late.extend(words("hello."));
        let (responses, end) =
            call(&mut client, with_timeouts(Some(1_000), None), &late, true).await;
        assert_eq!(end.map_err(|s| s.code()), Ok(()), "closed by the server");
        assert!(responses.is_empty(), "{responses:?}");

        // Speech after 125 ms: a 1 s start timeout is met (the emulator hears speech begin at
        // its first interim); with no end timeout the stream stays open until the client
        // half-closes.
        let (responses, end) = call(
            &mut client,
            with_timeouts(Some(1_000), None),
            &late[44_000..],
            false,
        )
        .await;
        assert_eq!(end.map_err(|s| s.code()), Ok(()));
        assert_eq!(final_texts(&responses), ["hello"]);

        // Two utterances 600 ms apart, then 1.5 s of silence, the client holding the call open.
        let mut two = words("one. two.");
        two.extend(silence_ms(1_500));
        // A 500 ms end timeout: closed in the pause after "one", after its final.
        let (responses, end) = call(&mut client, with_timeouts(None, Some(500)), &two, true).await;
        assert_eq!(end.map_err(|s| s.code()), Ok(()));
        assert_eq!(final_texts(&responses), ["one"]);
        // A 1 s one: the pause is shorter; closed in the silence after "two".
        let (responses, end) =
            call(&mut client, with_timeouts(None, Some(1_000)), &two, true).await;
        assert_eq!(end.map_err(|s| s.code()), Ok(()));
        assert_eq!(final_texts(&responses), ["one", "two"]);
    })
    .await;
}

/// A-law audio (`ALAW`, 8 kHz) is decoded: exact transcripts.
#[tokio::test]
async fn alaw_is_decoded() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client_v2(emulator.endpoint()).await;
        let mut first = config_request(GLOBAL, &["en-US"], false);
        if let Some(StreamingRequest::StreamingConfig(config)) = first.streaming_request.as_mut() {
            if let Some(recognition) = config.config.as_mut() {
                recognition.decoding_config = Some(DecodingConfig::ExplicitDecodingConfig(
                    ExplicitDecodingConfig {
                        encoding: AudioEncoding::Alaw as i32,
                        sample_rate_hertz: 8_000,
                        audio_channel_count: 1,
                    },
                ));
            }
        }
        let text = "call me back. on line four.";
        let audio = synth::encode(text, 8_000, SynthEncoding::Alaw);
        let (responses, end) = call(&mut client, first, &audio, false).await;
        assert_eq!(end.map_err(|s| s.code()), Ok(()));
        assert_eq!(final_texts(&responses), synth::expected_transcripts(text));
    })
    .await;
}

/// The first request names the recognizer of the endpoint's location; the implicit one only.
#[tokio::test]
async fn the_recognizer_is_checked() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client_v2(emulator.endpoint()).await;
        let audio = synth::encode("hello.", 16_000, SynthEncoding::Linear16);
        for (name, code, message) in [
            (
                "projects/p/locations/us/recognizers/_",
                Code::InvalidArgument,
                "Expected resource location to be global, but found us in resource name.",
            ),
            (
                "",
                Code::InvalidArgument,
                "Invalid resource field value in the request.",
            ),
            (
                "projects/p/locations/global/recognizers/stored",
                Code::NotFound,
                "Unable to find Recognizer projects/p/locations/global/recognizers/stored.",
            ),
        ] {
            let (_, end) = call(
                &mut client,
                config_request(name, &["en-US"], false),
                &audio,
                false,
            )
            .await;
            let status = end.expect_err(name);
            assert_eq!((status.code(), status.message()), (code, message), "{name}");
        }
    })
    .await;
}

/// At the stream limit v2 ends the stream with ABORTED, as Google words it.
#[tokio::test]
async fn the_stream_limit_is_aborted() {
    within(async {
        let config = EmulatorConfig {
            stream_limit: Duration::from_millis(300),
            ..EmulatorConfig::default()
        };
        let emulator = start(config).await;
        let mut client = client_v2(emulator.endpoint()).await;
        let first = config_request(GLOBAL, &["en-US"], false);
        let (_, end) = call(&mut client, first, &[], true).await;
        let status = end.expect_err("the limit ends the stream");
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(
            status.message(),
            "Max duration of 0.3 seconds reached for stream."
        );
    })
    .await;
}

/// With one API served, calls to the other are UNIMPLEMENTED.
#[tokio::test]
async fn apis_not_served_are_unimplemented() {
    within(async {
        let audio = synth::encode("hello.", 16_000, SynthEncoding::Linear16);
        for (v1, v2) in [(false, true), (true, false)] {
            let emulator = start(EmulatorConfig {
                apis: Apis { v1, v2 },
                ..EmulatorConfig::default()
            })
            .await;
            let mut v1_client = common::client(&emulator).await;
            let v1_call = common::run_call(
                &mut v1_client,
                common::config_request(&common::Setup::default()),
                vec![audio.clone()],
                common::Pace::Burst,
                true,
            )
            .await;
            let mut v2_client = client_v2(emulator.endpoint()).await;
            let first = config_request(GLOBAL, &["en-US"], false);
            let (_, v2_end) = call(&mut v2_client, first, &audio, false).await;
            let served = |yes: bool| if yes { Code::Ok } else { Code::Unimplemented };
            assert_eq!(v1_call.code(), served(v1), "v1 with {v1}/{v2}");
            assert_eq!(
                v2_end.err().map_or(Code::Ok, |s| s.code()),
                served(v2),
                "v2 with {v1}/{v2}"
            );
        }
    })
    .await;
}
