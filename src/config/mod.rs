//! The service configuration: `config.toml` (every key optional, defaults below), overridden by
//! environment variables `VOXGATE_<SECTION>__<KEY>`, overridden by command-line flags.
//!
//! Unknown keys and invalid values are rejected at start-up with a message that names the key
//! (`server.listen: invalid socket address syntax`), so a typo never silently falls back to a default.

mod dialects;
mod key_hash;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use dialects::DialectsSettings;
pub use key_hash::KeyHash;
use serde::Deserialize;
use voxgate_actors::settings::{
    AudioSettings, GoogleSettings, LocalSettings, SessionSettings, SupervisionSettings,
    MAX_WRITE_COALESCE_MS,
};
use voxgate_actors::webhooks::WebhookSettings;

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
    pub dialects: DialectsSettings,
    pub webhooks: WebhookSettings,
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
    /// Drain by hand-off: after SIGTERM, sessions whose clients can follow it (the native
    /// protocol) are told to resume on another instance (`reconnect`) instead of being held to
    /// the grace period. Needs a shared `[auth] token_secret` (only then can another instance
    /// open the token) and `[session] resume_window_secs` > 0; otherwise every session is held.
    pub hand_off: bool,
    /// How long after SIGTERM (when `/readyz` starts failing) the sessions are told to move: long
    /// enough for the load balancer to have taken this instance out, so that no resume comes back
    /// here (HAProxy as shipped: checks every 1 s, one failure).
    pub hand_off_delay_secs: f64,
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
            hand_off: true,
            hand_off_delay_secs: 2.0,
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
    pub api_keys: Vec<KeyHash>,
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

/// Why Speech v2 on Google needs a project, for the error when none is known.
pub const V2_PROJECT_REQUIRED: &str = "required with api = \"v2\" and backend = \"google\" \
     when the credentials name none (the recognizer is \
     projects/{project}/locations/{location}/recognizers/{recognizer})";

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
    /// `[google]`'s v2 keys: names that fit in a recognizer path, and a project when v2 calls Google.
    fn validate_google_v2(&self) -> Result<(), ConfigError> {
        let google = &self.google;
        let segment_ok = |v: &str| !v.is_empty() && !v.contains(['/', ' ']);
        for (key, value) in [
            ("google.location", google.location.as_str()),
            ("google.recognizer", google.recognizer.as_str()),
            ("google.project", google.project.as_deref().unwrap_or("-")),
        ] {
            if !segment_ok(value) {
                return Err(ConfigError(format!(
                    "{key}: `{value}` is not a resource name segment (no `/` or spaces)"
                )));
            }
        }
        // With ADC the credentials may name the project: checked once they are found
        // (backend.rs); without credentials nothing else can.
        let calls_google_v2 = google.api == voxgate_actors::settings::GoogleApi::V2
            && self.recognizer.backend == Backend::Google
            && google.auth == voxgate_actors::settings::GoogleAuth::None;
        if calls_google_v2 && google.project.is_none() {
            return Err(ConfigError(format!(
                "google.project: {V2_PROJECT_REQUIRED}"
            )));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let session = &self.session;
        let server = &self.server;
        let mut checks: Vec<(&str, bool)> = vec![
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
                "supervision.force_final_after_secs",
                self.supervision.force_final_after_secs == 0.0
                    || (self.supervision.force_final_after_secs > 0.0
                        && self.supervision.force_final_after_secs
                            < self.supervision.max_stream_secs
                        && self.supervision.force_final_after_secs * 1_000.0
                            < self.audio.max_replay_ms as f64),
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
                "google.write_coalesce_ms",
                (0.0..=MAX_WRITE_COALESCE_MS).contains(&self.google.write_coalesce_ms),
            ),
            (
                "server.shutdown_grace_secs",
                self.server.shutdown_grace_secs >= 0.0,
            ),
            (
                "server.hand_off_delay_secs",
                (0.0..=MAX_TIMER_SECS).contains(&server.hand_off_delay_secs),
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
                "session.resume_window_secs",
                (0.0..=86_400.0).contains(&session.resume_window_secs),
            ),
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
        checks.extend(self.dialects.checks(self.audio.max_buffer_ms));
        checks.extend(self.webhooks.checks());
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
        self.validate_google_v2()?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError(
                "tls: cert and key must be given together".to_string(),
            ));
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
mod tests;
