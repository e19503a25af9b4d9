//! The service configuration: `config.toml` (every key optional, defaults below), overridden by
//! environment variables `VOXGATE_<SECTION>__<KEY>`, overridden by command-line flags.
//!
//! Unknown keys and invalid values are rejected at start-up with a message that names the key
//! (`server.listen: invalid socket address syntax`), so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use voxgate_actors::settings::{
    AudioSettings, GoogleSettings, LocalSettings, SessionSettings, SupervisionSettings,
};

/// The whole configuration. Sections mirror `config.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub recognizer: RecognizerSettings,
    pub session: SessionSettings,
    pub audio: AudioSettings,
    pub supervision: SupervisionSettings,
    pub google: GoogleSettings,
    pub local: LocalSettings,
}

/// `[server]`: the HTTP/WebSocket listener and the process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Worker threads serving sessions; 0 = one per CPU core.
    pub workers: usize,
    /// After SIGTERM/SIGINT: how long open sessions may go on before they are flushed and closed
    /// with 1001.
    pub shutdown_grace_secs: f64,
    /// A client must send its request head within this long of connecting, and a request body
    /// within this long of the head (slow-loris).
    pub request_timeout_secs: f64,
    /// Data the server sent that a client has neither acknowledged nor made room for (a client
    /// that stopped reading, or vanished) for this long ends its connection (`TCP_USER_TIMEOUT`).
    pub send_timeout_secs: f64,
    /// New connections (`/v1/listen`, `/v1/tokens`) per second from one client address, on
    /// average: HTTP 429 `rate_limited` beyond.
    pub connection_rate_per_ip: f64,
    /// …with bursts of up to this many.
    pub connection_burst_per_ip: u32,
    /// The reverse proxies (their IP addresses) whose `X-Forwarded-For` is believed: only a
    /// request whose TCP peer is one of them has its client address taken from that header (the
    /// rightmost entry that is not itself a trusted proxy). Empty: the header is ignored, since
    /// anyone else could forge it to dodge the per-address limits.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            shutdown_grace_secs: 30.0,
            request_timeout_secs: 5.0,
            send_timeout_secs: 10.0,
            connection_rate_per_ip: 10.0,
            connection_burst_per_ip: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[tls]`: serve `wss://`/`https://` directly. Without `cert` and `key`, plain `ws://` (behind a
/// TLS-terminating proxy, or on loopback).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// How often the files are checked for changes (and reloaded); 0 = only on SIGHUP.
    pub reload_interval_secs: f64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert: None,
            key: None,
            reload_interval_secs: 10.0,
        }
    }
}

/// A secret from the configuration (or the environment). Its `Debug` never shows it, so a logged
/// configuration does not leak it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[auth]`: who may connect, and from which web pages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The accepted API keys, each as `sha256:<64 hex digits>` (the SHA-256 of the key; the keys
    /// themselves are never stored).
    pub api_keys: Vec<String>,
    /// Accept clients without a credential even on a non-loopback address (with no `api_keys`
    /// configured, anonymous clients are accepted on loopback only, and voxgate refuses to start
    /// on any other address unless this is set).
    pub anonymous: bool,
    /// The key that signs session tokens (at least 32 characters). Absent: a random one is made
    /// at start, so tokens do not survive a restart (nor work across instances).
    pub token_secret: Option<Secret>,
    /// Lifetime of a token when `POST /v1/tokens` asks for none.
    pub token_ttl_secs: f64,
    /// Longest lifetime a token may be given.
    pub max_token_ttl_secs: f64,
    /// Web pages (origins, `https://app.example.com`) whose browsers may connect; `"*"` = any.
    /// Empty: same-origin only. Clients that send no `Origin` (non-browsers) are not affected.
    pub allowed_origins: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            api_keys: Vec::new(),
            anonymous: false,
            token_secret: None,
            token_ttl_secs: 300.0,
            max_token_ttl_secs: 3_600.0,
            allowed_origins: Vec::new(),
        }
    }
}

/// The shortest `[tls] reload_interval_secs` other than 0 (a file check this often is cheap; a
/// shorter, or sub-nanosecond, period makes no sense and a zero one would stop the timer).
pub const MIN_RELOAD_INTERVAL_SECS: f64 = 0.01;
/// The longest period or timeout a timer is given: a day.
pub const MAX_TIMER_SECS: f64 = 86_400.0;
/// The longest `[auth] max_token_ttl_secs`: 30 days (tokens are meant to be short-lived; and
/// the expiry must stay a valid Unix time).
pub const MAX_TOKEN_TTL_SECS: f64 = 30.0 * 86_400.0;
/// The lowest `[server] connection_rate_per_ip`: one per 1000 s (the bucket's refill time must be
/// a representable duration; any finite rate above it is fine — load tools lift the limit with
/// 1e9).
pub const MIN_CONNECTION_RATE: f64 = 0.001;

/// The shortest accepted `[auth] token_secret`.
pub const MIN_TOKEN_SECRET_CHARS: usize = 32;

/// Which speech engine the sessions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The offline speech engine inside the process (`[local]`: Moonshine, installed by
    /// `scripts/setup-offline-engine.sh`, or PocketSphinx; a build with the `local` feature).
    Local,
    /// Google Speech-to-Text v1 at `[google] endpoint`.
    Google,
    /// The Google-compatible emulator, started inside the process on a loopback port and reached
    /// through the same Google client code (no Google account needed; recognises emulator-encoded
    /// audio only, see `docs/emulator.md`).
    Emulator,
}

/// `[recognizer]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecognizerSettings {
    pub backend: Backend,
}

impl Default for RecognizerSettings {
    fn default() -> Self {
        RecognizerSettings {
            backend: Backend::Local,
        }
    }
}

/// A configuration that cannot be used; the message names the key or the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

const ENV_PREFIX: &str = "VOXGATE_";

impl Config {
    /// Reads `path` (when `required` is false a missing file means "all defaults"), then applies
    /// `VOXGATE_<SECTION>__<KEY>` variables from `env`, then validates.
    pub fn load(
        path: &Path,
        required: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(e) => return Err(ConfigError(format!("{}: {e}", path.display()))),
        };
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.message())))?;
        apply_env(&mut table, env)?;
        let config = Config::from_table(table)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Deserialises a table, naming the offending key on error.
    pub fn from_table(table: toml::Table) -> Result<Config, String> {
        let value = toml::Value::Table(table);
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let session = &self.session;
        let server = &self.server;
        let checks: Vec<(&str, bool)> = vec![
            (
                "audio.frame_ms",
                (10..=1_000).contains(&self.audio.frame_ms),
            ),
            (
                "audio.max_request_bytes",
                self.audio.max_request_bytes >= 320,
            ),
            (
                "audio.max_buffer_ms",
                self.audio.max_buffer_ms >= self.audio.frame_ms,
            ),
            (
                "audio.max_replay_ms",
                self.audio.max_replay_ms >= self.audio.max_buffer_ms,
            ),
            // Google's "too fast" rule: a burst of about 10 s, then about 2× real time.
            ("audio.max_lead_ms", self.audio.max_lead_ms <= 10_000),
            (
                "audio.catchup_speed",
                (1.0..=2.0).contains(&self.audio.catchup_speed),
            ),
            // Below Google's ~10 s audio timeout; 0 turns the gap close off.
            ("audio.gap_close_ms", self.audio.gap_close_ms <= 9_000),
            (
                "supervision.rotate_after_secs",
                self.supervision.rotate_after_secs > 0.0,
            ),
            (
                "supervision.max_stream_secs",
                self.supervision.max_stream_secs >= self.supervision.rotate_after_secs,
            ),
            (
                "supervision.standby_max_wait_secs",
                (0.1..=9.0).contains(&self.supervision.standby_max_wait_secs),
            ),
            (
                "supervision.restart_period_secs",
                self.supervision.restart_period_secs > 0.0,
            ),
            (
                "supervision.breaker_open_ms",
                self.supervision.breaker_open_ms >= 1,
            ),
            (
                "supervision.breaker_max_open_ms",
                self.supervision.breaker_max_open_ms >= self.supervision.breaker_open_ms,
            ),
            (
                "session.max_frame_bytes",
                self.session.max_frame_bytes >= 1_024,
            ),
            ("session.max_sessions", self.session.max_sessions >= 1),
            ("session.ack_interval_ms", self.session.ack_interval_ms >= 1),
            (
                "session.heartbeat_interval_secs",
                self.session.heartbeat_interval_secs > 0.0,
            ),
            (
                "session.client_timeout_secs",
                self.session.client_timeout_secs > self.session.heartbeat_interval_secs,
            ),
            (
                "session.max_session_secs",
                self.session.max_session_secs > 0.0,
            ),
            (
                "supervision.backoff_multiplier",
                self.supervision.backoff_multiplier >= 1.0,
            ),
            (
                "supervision.jitter",
                (0.0..1.0).contains(&self.supervision.jitter),
            ),
            (
                "google.streams_per_connection",
                self.google.streams_per_connection >= 1,
            ),
            (
                "server.shutdown_grace_secs",
                self.server.shutdown_grace_secs >= 0.0,
            ),
            (
                "server.request_timeout_secs",
                (0.01..=MAX_TIMER_SECS).contains(&server.request_timeout_secs),
            ),
            (
                "server.send_timeout_secs",
                (0.1..=3_600.0).contains(&server.send_timeout_secs),
            ),
            (
                "server.connection_rate_per_ip",
                (MIN_CONNECTION_RATE..=f64::MAX).contains(&server.connection_rate_per_ip),
            ),
            (
                "server.connection_burst_per_ip",
                server.connection_burst_per_ip >= 1,
            ),
            (
                "session.max_sessions_per_ip",
                session.max_sessions_per_ip >= 1,
            ),
            (
                "session.max_sessions_per_key",
                session.max_sessions_per_key >= 1,
            ),
            (
                "session.max_json_bytes",
                (1_024..=session.max_frame_bytes).contains(&session.max_json_bytes),
            ),
            (
                "session.max_messages_per_sec",
                session.max_messages_per_sec >= 1,
            ),
            ("session.max_audio_speed", session.max_audio_speed >= 1.0),
            (
                "session.max_audio_lead_ms",
                session.max_audio_lead_ms >= session.audio_burst_ms,
            ),
            (
                "session.max_outgoing_bytes",
                session.max_outgoing_bytes >= 16 * 1_024,
            ),
            // 0 = SIGHUP only; otherwise a period a timer can tick at.
            (
                "tls.reload_interval_secs",
                self.tls.reload_interval_secs == 0.0
                    || (MIN_RELOAD_INTERVAL_SECS..=MAX_TIMER_SECS)
                        .contains(&self.tls.reload_interval_secs),
            ),
            ("auth.token_ttl_secs", self.auth.token_ttl_secs > 0.0),
            (
                "auth.max_token_ttl_secs",
                (self.auth.token_ttl_secs..=MAX_TOKEN_TTL_SECS)
                    .contains(&self.auth.max_token_ttl_secs),
            ),
            (
                "local.end_silence_ms",
                (100..=10_000).contains(&self.local.end_silence_ms),
            ),
            (
                "local.interim_interval_ms",
                (10..=10_000).contains(&self.local.interim_interval_ms),
            ),
            (
                "local.redecode_interval_ms",
                (100..=10_000).contains(&self.local.redecode_interval_ms),
            ),
            (
                "local.max_segment_ms",
                (2_000..=30_000).contains(&self.local.max_segment_ms),
            ),
            (
                "local.max_load",
                self.local.max_load > 0.0 && self.local.max_load <= 1.0,
            ),
            (
                "local.max_queue_wait_ms",
                (10..=60_000).contains(&self.local.max_queue_wait_ms),
            ),
        ];
        if let Some((key, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(ConfigError(format!(
                "{key}: value out of range (see config.toml)"
            )));
        }
        let code_lists = [
            (
                "supervision.retryable_codes",
                &self.supervision.retryable_codes,
            ),
            ("supervision.breaker_codes", &self.supervision.breaker_codes),
        ];
        for (key, codes) in code_lists {
            for code in codes {
                if voxgate_actors::settings::parse_grpc_code(code).is_none() {
                    return Err(ConfigError(format!("{key}: unknown gRPC code `{code}`")));
                }
            }
        }
        let endpoint = &self.google.endpoint;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ConfigError(format!(
                "google.endpoint: `{endpoint}` must start with https:// or http://"
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError(
                "tls: cert and key must be given together".to_string(),
            ));
        }
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            if crate::server::auth::parse_key_hash(key).is_none() {
                // Never quoted: an entry that is not a hash is most likely a key pasted raw.
                return Err(ConfigError(format!(
                    "auth.api_keys[{i}]: expected `sha256:<64 hex digits>` (store the SHA-256 of \
                     the key, e.g. `printf %s \"$KEY\" | sha256sum`, never the key itself)"
                )));
            }
        }
        if let Some(secret) = &self.auth.token_secret {
            if secret.expose().chars().count() < MIN_TOKEN_SECRET_CHARS {
                return Err(ConfigError(format!(
                    "auth.token_secret: must have at least {MIN_TOKEN_SECRET_CHARS} characters"
                )));
            }
        }
        for origin in &self.auth.allowed_origins {
            if let Err(e) = crate::server::origin::parse_allowed(origin) {
                return Err(ConfigError(format!("auth.allowed_origins: {e}")));
            }
        }
        Ok(())
    }
}

/// Applies `VOXGATE_<SECTION>__<KEY>=value`. The value is read as a TOML value when it parses as
/// one (`8080`, `true`, `["A","B"]`), else as a string, so `VOXGATE_SERVER__LISTEN=0.0.0.0:80` works.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => return Err(ConfigError(format!("{name}: `{section}` is not a section"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    /// The supervision and pacing bounds are enforced: catch-up within Google's "too fast" rule,
    /// replay retention at least the buffer, rotation ages in order, breaker codes known.
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
}
