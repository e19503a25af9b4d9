//! `[webhooks]`: where transcripts are posted, how events are signed, retried and bounded
//! (`docs/dialects.md`, "Webhooks"). The actors obey it, so it lives here; the service's
//! configuration only embeds it.

use serde::Deserialize;

/// `[webhooks]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Every posting session's events go to each of these (`https://…`; `http://` for loopback
    /// receivers and tests).
    pub urls: Vec<String>,
    /// The URL prefixes a call may name as its own receiver (Twilio's `webhook_url` custom
    /// parameter): a per-call URL outside every prefix is refused. Empty: no per-call URLs.
    pub allow: Vec<String>,
    /// The HMAC-SHA256 key of `Voxgate-Signature` (at least 16 characters). Without it nothing is
    /// posted: a session that asks for webhooks is refused.
    pub secret: Option<String>,
    /// Post interim results too (`transcript.interim`), not only finals.
    pub interim: bool,
    /// One delivery attempt (connect, TLS, request, reply) must finish within this long.
    pub timeout_secs: f64,
    /// Attempts per event and receiver before it is dropped (`gave_up`).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failed attempt…
    pub initial_backoff_ms: u64,
    /// …up to this.
    pub max_backoff_ms: u64,
    /// Events waiting for one receiver of one session; beyond, new events are dropped
    /// (`session_queue_full`).
    pub max_queue_per_session: usize,
    /// Events waiting in the whole process; beyond, new events are dropped (`queue_full`).
    pub max_queue_total: usize,
    /// Extra PEM certificates trusted for `https://` receivers (a private CA), on top of the
    /// public web roots.
    pub ca_file: Option<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            urls: Vec::new(),
            allow: Vec::new(),
            secret: None,
            interim: false,
            timeout_secs: 5.0,
            max_attempts: 8,
            initial_backoff_ms: 250,
            max_backoff_ms: 10_000,
            max_queue_per_session: 1_000,
            max_queue_total: 100_000,
            ca_file: None,
        }
    }
}

impl std::fmt::Debug for WebhookSettings {
    /// Never shows the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &self.urls)
            .field("allow", &self.allow)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("interim", &self.interim)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff_ms", &self.initial_backoff_ms)
            .field("max_backoff_ms", &self.max_backoff_ms)
            .field("max_queue_per_session", &self.max_queue_per_session)
            .field("max_queue_total", &self.max_queue_total)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The shortest signing secret accepted.
pub const MIN_SECRET_CHARS: usize = 16;

fn is_http_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some())
}

impl WebhookSettings {
    /// The range checks of `Config::validate`: (key, ok).
    pub fn checks(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("webhooks.urls", self.urls.iter().all(|u| is_http_url(u))),
            ("webhooks.allow", self.allow.iter().all(|u| is_http_url(u))),
            (
                "webhooks.secret",
                self.secret
                    .as_ref()
                    .is_none_or(|s| s.chars().count() >= MIN_SECRET_CHARS),
            ),
            (
                "webhooks.secret (required with webhooks.urls or webhooks.allow)",
                self.secret.is_some() || (self.urls.is_empty() && self.allow.is_empty()),
            ),
            (
                "webhooks.timeout_secs",
                self.timeout_secs > 0.0 && self.timeout_secs <= 300.0,
            ),
            (
                "webhooks.max_attempts",
                (1..=100).contains(&self.max_attempts),
            ),
            (
                "webhooks.initial_backoff_ms",
                (1..=600_000).contains(&self.initial_backoff_ms),
            ),
            (
                "webhooks.max_backoff_ms",
                self.max_backoff_ms >= self.initial_backoff_ms && self.max_backoff_ms <= 3_600_000,
            ),
            (
                "webhooks.max_queue_per_session",
                self.max_queue_per_session >= 1,
            ),
            (
                "webhooks.max_queue_total",
                self.max_queue_total >= self.max_queue_per_session,
            ),
        ]
    }

    /// Whether `url` is one a call may name: it equals an `allow` prefix, or continues one at a
    /// path boundary (`https://a.example/hooks` allows `https://a.example/hooks/x` but not
    /// `https://a.example/hooksmith` nor `https://a.example.evil/…`).
    pub fn allows(&self, url: &str) -> bool {
        is_http_url(url)
            && self.allow.iter().any(|prefix| {
                url == prefix
                    || url.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                        prefix.ends_with('/') || rest.starts_with('/') || rest.starts_with('?')
                    })
            })
    }
}
