use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    streaming_recognition_features::VoiceActivityTimeout, AutoDetectDecodingConfig,
    ExplicitDecodingConfig, RecognitionConfig, StreamingRecognitionFeatures,
};

use super::*;

fn streaming(encoding: AudioEncoding, rate: i32, languages: &[&str]) -> StreamingRecognitionConfig {
    StreamingRecognitionConfig {
        config: Some(RecognitionConfig {
            decoding_config: Some(DecodingConfig::ExplicitDecodingConfig(
                ExplicitDecodingConfig {
                    encoding: encoding as i32,
                    sample_rate_hertz: rate,
                    audio_channel_count: 1,
                },
            )),
            language_codes: languages.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn recognizer_names_are_checked_against_the_location() {
    let name = "projects/p1/locations/global/recognizers/_";
    assert_eq!(
        parse_recognizer(name),
        Some(RecognizerName {
            project: "p1",
            location: "global",
            recognizer: "_"
        })
    );
    assert!(check_recognizer(name, "global").is_ok());
    let wrong_place = check_recognizer("projects/p1/locations/us/recognizers/_", "global");
    let status = wrong_place.expect_err("location");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Expected resource location to be global, but found us in resource name."
    );
    for bad in [
        "",
        "projects//locations/global/recognizers/_",
        "p/x/locations/global/recognizers/_",
    ] {
        let status = check_recognizer(bad, "global").expect_err(bad);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
    }
    let stored = check_recognizer("projects/p/locations/global/recognizers/mine", "global");
    assert_eq!(stored.map_err(|s| s.code()), Err(tonic::Code::NotFound));
}

#[test]
fn languages_are_normalised_like_google() {
    assert_eq!(normalise_language("en-us"), "en-US");
    assert_eq!(normalise_language("ZH-hant-tw"), "zh-Hant-TW");
    assert_eq!(normalise_language("cmn-Hans-CN"), "cmn-Hans-CN");
    assert_eq!(normalise_language("fr"), "fr");
}

#[test]
fn configs_are_checked_like_google() {
    let ok = accept_config(&streaming(
        AudioEncoding::Linear16,
        16_000,
        &["en-us", "fr-FR"],
    ));
    let (accepted, options) = ok.expect("valid config");
    assert_eq!(accepted.bytes_per_second, 32_000.0);
    assert_eq!(accepted.synth, Some(SynthEncoding::Linear16));
    assert_eq!(options.languages, vec!["en-US", "fr-FR"]);
    let alaw = accept_config(&streaming(AudioEncoding::Alaw, 8_000, &["en-US"]));
    assert_eq!(
        alaw.map(|(c, _)| (c.bytes_per_second, c.synth)).ok(),
        Some((8_000.0, Some(SynthEncoding::Alaw))),
        "A-law is decoded"
    );
    let mut no_decoding = streaming(AudioEncoding::Linear16, 16_000, &["en-US"]);
    if let Some(config) = no_decoding.config.as_mut() {
        config.decoding_config = None;
    }
    let mut auto = no_decoding.clone();
    if let Some(config) = auto.config.as_mut() {
        config.decoding_config = Some(DecodingConfig::AutoDecodingConfig(
            AutoDetectDecodingConfig {},
        ));
    }
    assert_eq!(accept_config(&auto).map(|(c, _)| c.synth).ok(), Some(None));
    let mut timeout_alone = streaming(AudioEncoding::Linear16, 16_000, &["en-US"]);
    timeout_alone.streaming_features = Some(StreamingRecognitionFeatures {
        voice_activity_timeout: Some(VoiceActivityTimeout::default()),
        ..Default::default()
    });
    for (config, what) in [
        (
            streaming(AudioEncoding::Linear16, 96_000, &["en-US"]),
            "rate",
        ),
        (streaming(AudioEncoding::Linear16, 16_000, &[]), "languages"),
        (
            streaming(AudioEncoding::Unspecified, 16_000, &["en-US"]),
            "encoding",
        ),
        (
            streaming(AudioEncoding::Amr, 16_000, &["en-US"]),
            "AMR rate",
        ),
        (no_decoding, "no decoding config"),
        (timeout_alone, "timeout without events"),
        (StreamingRecognitionConfig::default(), "no config"),
    ] {
        let status = accept_config(&config).expect_err(what);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}");
    }
}

#[test]
fn the_duration_limit_is_worded_as_google_words_it() {
    let status = stream_limit_status(Duration::from_secs(300));
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(
        status.message(),
        "Max duration of 5 minutes reached for stream."
    );
    let short = stream_limit_status(Duration::from_millis(3500));
    assert_eq!(
        short.message(),
        "Max duration of 3.5 seconds reached for stream."
    );
}
