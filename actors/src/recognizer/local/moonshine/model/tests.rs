use super::*;
use crate::recognizer::local::test_support::{read_raw, GOFORWARD};
use crate::settings::LocalSettings;

/// The installed model (scripts/setup-offline-engine.sh).
fn installed() -> ModelFiles {
    let settings = LocalSettings::default();
    ModelFiles {
        model_dir: settings.moonshine_model_dir(),
        onnxruntime_library: settings.onnxruntime_path(),
    }
}

fn model() -> MoonshineModel {
    MoonshineModel::load(&installed()).unwrap_or_else(|e| panic!("{e}"))
}

fn floats(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32_768.0).collect()
}

/// Real speech decodes to its words, cased and punctuated, well before the token cap.
#[test]
fn decodes_real_speech() {
    let mut model = model();
    let decoded = model
        .transcribe(&floats(&read_raw(GOFORWARD)))
        .unwrap_or_else(|e| panic!("{e}"));
    let words: String = decoded
        .text
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ')
        .collect();
    assert_eq!(words, "go forward ten meters", "{decoded:?}");
    assert!(!decoded.hit_token_cap);
    assert!(decoded.tokens >= 4 && decoded.tokens < 20, "{decoded:?}");
}

/// Decoding is deterministic: the same segment twice gives the same text (no state carried
/// between calls).
#[test]
fn decoding_is_repeatable() {
    let mut model = model();
    let samples = floats(&read_raw(GOFORWARD));
    let first = model.transcribe(&samples).unwrap_or_else(|e| panic!("{e}"));
    let half = model
        .transcribe(&samples[..samples.len() / 2])
        .unwrap_or_else(|e| panic!("{e}"));
    let again = model.transcribe(&samples).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, again);
    assert_ne!(first.text, half.text);
}

/// Input shorter than the encoder accepts is no text, not an error.
#[test]
fn too_short_input_is_no_text() {
    let mut model = model();
    let decoded = model
        .transcribe(&vec![0.0; MIN_SAMPLES - 1])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.text, "");
    assert_eq!(decoded.tokens, 0);
}

#[test]
fn token_cap_grows_with_length() {
    assert_eq!(MoonshineModel::token_cap(0), TOKEN_SLACK);
    assert_eq!(MoonshineModel::token_cap(16_000), 7 + TOKEN_SLACK);
    assert_eq!(MoonshineModel::token_cap(160_000), 65 + TOKEN_SLACK);
}

#[test]
fn argmax_takes_the_first_largest() {
    assert_eq!(argmax(&[0.0, 3.0, 1.0, 3.0]), 1);
    assert_eq!(argmax(&[-1.0]), 0);
    assert_eq!(argmax(&[]), 0);
}

/// Missing files are named, with the command that installs them.
#[test]
fn missing_files_name_the_setup_command() {
    let files = ModelFiles {
        model_dir: "/nonexistent/moonshine".into(),
        ..installed()
    };
    let error = MoonshineModel::load(&files).err().unwrap_or_default();
    assert!(
        error.contains("/nonexistent/moonshine/encoder_model.ort"),
        "{error}"
    );
    assert!(error.contains("[local] moonshine_dir"), "{error}");
    assert!(error.contains(SETUP_COMMAND), "{error}");
    let files = ModelFiles {
        onnxruntime_library: "/nonexistent/libonnxruntime.so".into(),
        ..installed()
    };
    let error = MoonshineModel::load(&files).err().unwrap_or_default();
    assert!(error.contains("/nonexistent/libonnxruntime.so"), "{error}");
    assert!(error.contains("[local] onnxruntime_library"), "{error}");
    assert!(error.contains(SETUP_COMMAND), "{error}");
}
