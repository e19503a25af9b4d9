//! The configuration's tests: loading, defaults, environment overrides, validation messages.

use super::*;

fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("voxgate-config-{}", uuid_like()));
    std::fs::create_dir_all(&dir).map_err(|e| ConfigError(e.to_string()))?;
    let path = dir.join("config.toml");
    std::fs::write(&path, text).map_err(|e| ConfigError(e.to_string()))?;
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let result = Config::load(&path, true, env);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "")
}

/// The documented default file is exactly the built-in defaults.
#[test]
fn shipped_config_toml_equals_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let config = Config::load(&path, true, Vec::new()).map_err(|e| e.0);
    assert_eq!(config, Ok(Config::default()));
}

/// A file may give only some keys; the rest keep their defaults.
#[test]
fn partial_file_keeps_other_defaults() {
    let c = load_str("[server]\nlisten = \"127.0.0.1:9\"\n", &[]).map_err(|e| e.0);
    let c = c.unwrap_or_default();
    assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 9)));
    assert_eq!(c.audio, AudioSettings::default());
}

/// Unknown keys are rejected with the key's path.
#[test]
fn unknown_key_is_named() {
    let err = load_str("[server]\nlisen = \"127.0.0.1:9\"\n", &[])
        .err()
        .map(|e| e.0);
    let err = err.unwrap_or_default();
    assert!(
        err.contains("server.lisen") || err.contains("lisen"),
        "{err}"
    );
}

/// An `api_keys` entry that is not a hash is most likely a key pasted raw: the error names
/// its index and what is expected, never any part of it.
#[test]
fn a_bad_api_key_entry_is_named_not_quoted() {
    let raw_key = "sk-live-9f8e7d6c5b4a39281706";
    let good = "sha256:".to_string() + &"ab".repeat(32);
    let text = format!("[auth]\napi_keys = [\"{good}\", \"{raw_key}\"]\n");
    let err = load_str(&text, &[]).err().map(|e| e.0).unwrap_or_default();
    assert!(err.contains("auth.api_keys[1]"), "{err}");
    assert!(err.contains("sha256:<64 hex digits>"), "{err}");
    assert!(!err.contains(&raw_key[..3]), "the entry is quoted: {err}");
}

/// `trusted_proxies` takes IP addresses; anything else is named by its key.
#[test]
fn trusted_proxies_are_ip_addresses() {
    let c = load_str("[server]\ntrusted_proxies = [\"10.0.0.1\", \"::1\"]\n", &[])
        .map_err(|e| e.0)
        .unwrap_or_default();
    assert_eq!(c.server.trusted_proxies.len(), 2);
    for bad in ["[\"10.0.0.0/8\"]", "[\"proxy.example\"]", "true"] {
        let text = format!("[server]\ntrusted_proxies = {bad}\n");
        let err = load_str(&text, &[]).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("server.trusted_proxies"), "{bad}: {err}");
    }
    let err = load_str("", &[("VOXGATE_SERVER__TRUSTED_PROXIES", "[\"nope\"]")])
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
    assert!(err.contains("server.trusted_proxies"), "{err}");
}

/// Invalid values are rejected with the key's path.
#[test]
fn invalid_value_is_named() {
    let err = load_str("[server]\nlisten = \"nowhere\"\n", &[])
        .err()
        .map(|e| e.0);
    assert!(err.unwrap_or_default().contains("server.listen"));
    let err = load_str("[audio]\nframe_ms = 0\n", &[]).err().map(|e| e.0);
    assert!(err.unwrap_or_default().contains("audio.frame_ms"));
    let err = load_str("[supervision]\nretryable_codes = [\"NOPE\"]\n", &[]).err();
    assert!(err.map(|e| e.0).unwrap_or_default().contains("NOPE"));
}

/// A phone call's frame length defaults to 20 ms per telephony dialect, apart from `[audio]
/// frame_ms`, and is checked like it (10–1 000 ms, within `[audio] max_buffer_ms`).
#[test]
fn call_frame_lengths_default_to_20_ms_and_are_checked() {
    let config = load_str("", &[]).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(config.audio.frame_ms, 100);
    let dialects = &config.dialects;
    assert_eq!(
        (
            dialects.twilio.frame_ms,
            dialects.telnyx.frame_ms,
            dialects.jambonz.frame_ms
        ),
        (20, 20, 20)
    );
    let set = load_str("[dialects.telnyx]\nframe_ms = 40\n", &[]).map(|c| c.dialects);
    assert_eq!(set.map(|d| d.telnyx.frame_ms).ok(), Some(40));
    for (toml, key) in [
        (
            "[dialects.twilio]\nframe_ms = 5\n",
            "dialects.twilio.frame_ms",
        ),
        (
            "[dialects.telnyx]\nframe_ms = 2000\n",
            "dialects.telnyx.frame_ms",
        ),
        (
            "[audio]\nframe_ms = 20\nmax_buffer_ms = 50\n[dialects.jambonz]\nframe_ms = 100\n",
            "dialects.jambonz.frame_ms",
        ),
    ] {
        let err = load_str(toml, &[]).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains(key), "{toml}: {err}");
    }
}

/// `[google] api = "v2"` calling Google needs a project — from the config when there are no
/// credentials to name one (with ADC it is checked once they are found, tests/e2e_google_auth.rs);
/// the recognizer path's parts are checked; the location picks the regional endpoint unless the
/// endpoint is set.
#[test]
fn google_v2_keys_are_checked() {
    let v2 = "[recognizer]\nbackend = \"google\"\n[google]\napi = \"v2\"\n";
    let err = load_str(&format!("{v2}auth = \"none\"\n"), &[])
        .err()
        .map(|e| e.0);
    assert!(err.unwrap_or_default().contains("google.project"));
    assert!(
        load_str(v2, &[]).is_ok(),
        "with ADC the credentials may name it"
    );
    let with_project = load_str(&format!("{v2}project = \"p\"\nlocation = \"eu\"\n"), &[]);
    let google = with_project.map(|c| c.google).map_err(|e| e.0);
    assert_eq!(
        google.map(|g| g.v2_endpoint()),
        Ok("https://eu-speech.googleapis.com".to_string())
    );
    let err = load_str("[google]\nlocation = \"us/x\"\n", &[]).err();
    assert!(err
        .map(|e| e.0)
        .unwrap_or_default()
        .contains("google.location"));
    let set = "[google]\nendpoint = \"http://127.0.0.1:9\"\nlocation = \"us\"\n";
    let endpoint = load_str(set, &[])
        .map(|c| c.google.v2_endpoint())
        .map_err(|e| e.0);
    assert_eq!(endpoint, Ok("http://127.0.0.1:9".to_string()));
}

/// The supervision and pacing bounds are enforced: catch-up within Google's "too fast" rule,
/// replay retention at least the buffer, rotation ages in order, a forced final before the
/// maximum age and the replay retention, breaker codes known.
#[test]
fn supervision_bounds_are_enforced() {
    let cases = [
        ("[audio]\ncatchup_speed = 2.5\n", "audio.catchup_speed"),
        ("[audio]\ncatchup_speed = 0.9\n", "audio.catchup_speed"),
        ("[audio]\nmax_lead_ms = 20000\n", "audio.max_lead_ms"),
        ("[audio]\nmax_replay_ms = 1000\n", "audio.max_replay_ms"),
        ("[audio]\ngap_close_ms = 12000\n", "audio.gap_close_ms"),
        (
            "[supervision]\nrotate_after_secs = 300.0\n",
            "supervision.max_stream_secs",
        ),
        (
            "[supervision]\nstandby_max_wait_secs = 15.0\n",
            "supervision.standby_max_wait_secs",
        ),
        (
            "[supervision]\nforce_final_after_secs = 300.0\n",
            "supervision.force_final_after_secs",
        ),
        (
            "[supervision]\nforce_final_after_secs = -1.0\n",
            "supervision.force_final_after_secs",
        ),
        (
            "[audio]\nmax_buffer_ms = 30000\nmax_replay_ms = 30000\n[supervision]\nforce_final_after_secs = 40.0\n",
            "supervision.force_final_after_secs",
        ),
        (
            "[supervision]\nbreaker_max_open_ms = 10\n",
            "supervision.breaker_max_open_ms",
        ),
        (
            "[supervision]\nbreaker_codes = [\"SOMETIMES\"]\n",
            "supervision.breaker_codes",
        ),
    ];
    for (text, key) in cases {
        let err = load_str(text, &[]).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains(key), "{text:?}: {err}");
    }
    assert!(load_str("[audio]\ncatchup_speed = 2.0\ngap_close_ms = 0\n", &[]).is_ok());
    assert!(load_str("[supervision]\nforce_final_after_secs = 0.0\n", &[]).is_ok());
}

/// Values that would make a zero or unrepresentable duration (and panic a timer or a clock
/// computation) are refused, naming the key.
#[test]
fn values_that_would_break_timers_are_refused() {
    let cases = [
        (
            "[tls]\nreload_interval_secs = 1e-12\n",
            "tls.reload_interval_secs",
        ),
        (
            "[tls]\nreload_interval_secs = 1e300\n",
            "tls.reload_interval_secs",
        ),
        (
            "[tls]\nreload_interval_secs = nan\n",
            "tls.reload_interval_secs",
        ),
        (
            "[server]\nconnection_rate_per_ip = 1e-300\n",
            "server.connection_rate_per_ip",
        ),
        (
            "[server]\nconnection_rate_per_ip = inf\n",
            "server.connection_rate_per_ip",
        ),
        (
            "[server]\nrequest_timeout_secs = 1e-12\n",
            "server.request_timeout_secs",
        ),
        (
            "[auth]\nmax_token_ttl_secs = 1e18\n",
            "auth.max_token_ttl_secs",
        ),
        (
            "[auth]\nmax_token_ttl_secs = inf\n",
            "auth.max_token_ttl_secs",
        ),
    ];
    for (text, key) in cases {
        let err = load_str(text, &[]).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains(key), "{text:?}: {err}");
    }
    assert!(load_str("[tls]\nreload_interval_secs = 0.0\n", &[]).is_ok());
    assert!(load_str("[server]\nconnection_rate_per_ip = 1e9\n", &[]).is_ok());
    assert!(load_str("[auth]\nmax_token_ttl_secs = 2592000.0\n", &[]).is_ok());
}

/// Environment variables override the file, typed as TOML when they parse as TOML.
#[test]
fn env_overrides_file() {
    let c = load_str(
        "[google]\nendpoint = \"http://a:1\"\n",
        &[
            ("VOXGATE_GOOGLE__ENDPOINT", "http://127.0.0.1:5"),
            ("VOXGATE_SESSION__MAX_SESSIONS", "7"),
            ("VOXGATE_RECOGNIZER__BACKEND", "google"),
            ("UNRELATED", "x"),
        ],
    )
    .map_err(|e| e.0);
    let c = c.unwrap_or_default();
    assert_eq!(c.google.endpoint, "http://127.0.0.1:5");
    assert_eq!(c.session.max_sessions, 7);
    assert_eq!(c.recognizer.backend, Backend::Google);
}

/// An unknown key given through the environment is rejected too.
#[test]
fn env_unknown_key_is_named() {
    let err = load_str("", &[("VOXGATE_SERVER__NOPE", "1")])
        .err()
        .map(|e| e.0);
    assert!(err.unwrap_or_default().contains("nope"));
}

/// `[local]` keys are read from the file and the environment, and checked.
#[test]
fn local_section_is_read_and_checked() {
    let c = load_str(
        "[recognizer]\nbackend = \"local\"\n[local]\nmodel_dir = \"/m\"\nworkers = 3\n",
        &[("VOXGATE_LOCAL__END_SILENCE_MS", "800")],
    )
    .map_err(|e| e.0)
    .unwrap_or_default();
    assert_eq!(c.recognizer.backend, Backend::Local);
    assert_eq!(c.local.model_dir, std::path::PathBuf::from("/m"));
    assert_eq!(c.local.workers, 3);
    assert_eq!(c.local.end_silence_ms, 800);
    assert_eq!(c.local.dictionary, LocalSettings::default().dictionary);
    let err = load_str("[local]\nend_silence_ms = 5\n", &[])
        .err()
        .map(|e| e.0);
    assert!(err.unwrap_or_default().contains("local.end_silence_ms"));
    let err = load_str("[local]\nmodel = \"x\"\n", &[]).err().map(|e| e.0);
    assert!(err.unwrap_or_default().contains("model"));
}
