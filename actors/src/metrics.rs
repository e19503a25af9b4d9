//! Prometheus metrics shared by every actor, served as text at `GET /metrics`.
//!
//! One process-wide registry: actors update these directly (they are atomics, cheap on the hot
//! path). Names and labels are listed in `docs/architecture.md`.

use std::sync::LazyLock;

use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Sessions open now.
    pub sessions_active: IntGauge,
    /// Sessions ever accepted (upgraded).
    pub sessions_total: IntCounter,
    /// Sessions told to move to another instance during a drain (`reconnect`).
    pub sessions_handed_off: IntCounter,
    /// Upstream streams open now.
    pub streams_active: IntGauge,
    /// Upstream streams ever opened.
    pub streams_total: IntCounter,
    /// Stream restarts after a failure, by gRPC code.
    pub stream_restarts: IntCounterVec,
    /// Proactive stream rotations (before Google's duration limit), not failures.
    pub stream_rotations: IntCounter,
    /// Streams the upstream ended at its duration limit (each replaced at once, like a rotation,
    /// and counted among the rotations too): non-zero means rotation came too late.
    pub stream_expiries: IntCounter,
    /// Timers that fired more than `stall_tolerance_ms` late — the gateway was stopped or starved
    /// of CPU — by timer (`audio_gap`, `forced_final`): each watched again instead of acted on.
    pub stalled_timers: IntCounterVec,
    /// Google access tokens fetched (one per process per refresh, shared by every session).
    pub google_token_fetches: IntCounter,
    /// 1 while the upstream circuit breaker is open or half-open.
    pub breaker_open: IntGauge,
    /// Times the circuit breaker opened.
    pub breaker_opens: IntCounter,
    /// Audio accepted from clients, in seconds.
    pub audio_seconds: Counter,
    /// Audio frames sent upstream, each one request on its stream (replays count again): with
    /// `audio_seconds`, what a frame length costs in requests.
    pub upstream_frames: IntCounter,
    /// Audio the upstream billed (Google v2's `total_billed_duration`), in seconds.
    pub billed_audio_seconds: Counter,
    /// Errors sent to clients, by error code.
    pub errors: IntCounterVec,
    /// Requests refused before any WebSocket (401, 403, 429, …), by refusal code.
    pub http_refusals: IntCounterVec,
    /// Transcripts sent to clients, by kind (`final`, `interim`).
    pub transcripts: IntCounterVec,
    /// Time from the last audio of a final result leaving the gateway to the result arriving.
    pub transcript_latency: Histogram,
    /// Webhook events accepted by a receiver (2xx).
    pub webhook_delivered: IntCounter,
    /// Webhook delivery attempts that failed and were retried.
    pub webhook_retries: IntCounter,
    /// Webhook events not delivered, by reason (`queue_full`, `session_queue_full`, `gave_up`,
    /// `untrusted`).
    pub webhook_dropped: IntCounterVec,
    /// Webhook events waiting for delivery now.
    pub webhook_queued: IntGauge,
    /// Media-stream frames skipped, by dialect and reason (`duplicate`, `late`), and sequence
    /// numbers given up on (`missing`).
    pub media_frames_skipped: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let m = Metrics {
        sessions_active: IntGauge::new("voxgate_sessions_active", "Sessions open now")?,
        sessions_total: IntCounter::new("voxgate_sessions_total", "Sessions accepted")?,
        sessions_handed_off: IntCounter::new(
            "voxgate_sessions_handed_off_total",
            "Sessions told to move to another instance during a drain",
        )?,
        streams_active: IntGauge::new("voxgate_streams_active", "Upstream streams open now")?,
        streams_total: IntCounter::new("voxgate_streams_total", "Upstream streams opened")?,
        stream_restarts: IntCounterVec::new(
            Opts::new(
                "voxgate_stream_restarts_total",
                "Upstream stream restarts after a failure, by gRPC code",
            ),
            &["code"],
        )?,
        stream_rotations: IntCounter::new(
            "voxgate_stream_rotations_total",
            "Upstream streams replaced proactively before the stream duration limit",
        )?,
        stream_expiries: IntCounter::new(
            "voxgate_stream_expiries_total",
            "Upstream streams ended by the upstream at its stream duration limit (replaced at once)",
        )?,
        stalled_timers: IntCounterVec::new(
            Opts::new(
                "voxgate_stalled_timers_total",
                "Audio-gap and forced-final timers that fired late (the gateway was stopped or \
                 starved of CPU): watched again instead of acted on",
            ),
            &["timer"],
        )?,
        google_token_fetches: IntCounter::new(
            "voxgate_google_token_fetches_total",
            "Google access tokens fetched from the credentials' token endpoint",
        )?,
        breaker_open: IntGauge::new(
            "voxgate_breaker_open",
            "1 while the upstream circuit breaker holds sessions back",
        )?,
        breaker_opens: IntCounter::new(
            "voxgate_breaker_opens_total",
            "Times the upstream circuit breaker opened",
        )?,
        audio_seconds: Counter::new(
            "voxgate_audio_seconds_total",
            "Seconds of audio accepted from clients",
        )?,
        upstream_frames: IntCounter::new(
            "voxgate_upstream_frames_total",
            "Audio frames sent upstream (one request each; replays count again)",
        )?,
        billed_audio_seconds: Counter::new(
            "voxgate_billed_audio_seconds_total",
            "Seconds of audio the upstream billed (Google v2's total_billed_duration)",
        )?,
        errors: IntCounterVec::new(
            Opts::new("voxgate_errors_total", "Errors sent to clients, by code"),
            &["code"],
        )?,
        http_refusals: IntCounterVec::new(
            Opts::new(
                "voxgate_http_refusals_total",
                "Requests refused at the HTTP level, by code",
            ),
            &["code"],
        )?,
        transcripts: IntCounterVec::new(
            Opts::new("voxgate_transcripts_total", "Transcripts sent, by kind"),
            &["kind"],
        )?,
        transcript_latency: Histogram::with_opts(
            HistogramOpts::new(
                "voxgate_transcript_latency_seconds",
                "From the end of a final result's audio leaving the gateway to the result arriving",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?,
        webhook_delivered: IntCounter::new(
            "voxgate_webhook_delivered_total",
            "Webhook events accepted by a receiver",
        )?,
        webhook_retries: IntCounter::new(
            "voxgate_webhook_retries_total",
            "Webhook delivery attempts that failed and were retried",
        )?,
        webhook_dropped: IntCounterVec::new(
            Opts::new(
                "voxgate_webhook_dropped_total",
                "Webhook events not delivered, by reason",
            ),
            &["reason"],
        )?,
        webhook_queued: IntGauge::new(
            "voxgate_webhook_queued",
            "Webhook events waiting for delivery",
        )?,
        media_frames_skipped: IntCounterVec::new(
            Opts::new(
                "voxgate_media_frames_skipped_total",
                "Media-stream frames skipped (duplicate, late) and sequence numbers given up on (missing)",
            ),
            &["dialect", "reason"],
        )?,
        registry,
    };
    m.registry.register(Box::new(m.sessions_active.clone()))?;
    m.registry.register(Box::new(m.sessions_total.clone()))?;
    m.registry
        .register(Box::new(m.sessions_handed_off.clone()))?;
    m.registry.register(Box::new(m.streams_active.clone()))?;
    m.registry.register(Box::new(m.streams_total.clone()))?;
    m.registry.register(Box::new(m.stream_restarts.clone()))?;
    m.registry.register(Box::new(m.stream_rotations.clone()))?;
    m.registry.register(Box::new(m.stream_expiries.clone()))?;
    m.registry.register(Box::new(m.stalled_timers.clone()))?;
    m.registry
        .register(Box::new(m.google_token_fetches.clone()))?;
    m.registry.register(Box::new(m.breaker_open.clone()))?;
    m.registry.register(Box::new(m.breaker_opens.clone()))?;
    m.registry.register(Box::new(m.audio_seconds.clone()))?;
    m.registry.register(Box::new(m.upstream_frames.clone()))?;
    m.registry
        .register(Box::new(m.billed_audio_seconds.clone()))?;
    m.registry.register(Box::new(m.errors.clone()))?;
    m.registry.register(Box::new(m.http_refusals.clone()))?;
    m.registry.register(Box::new(m.transcripts.clone()))?;
    m.registry
        .register(Box::new(m.transcript_latency.clone()))?;
    m.registry.register(Box::new(m.webhook_delivered.clone()))?;
    m.registry.register(Box::new(m.webhook_retries.clone()))?;
    m.registry.register(Box::new(m.webhook_dropped.clone()))?;
    m.registry.register(Box::new(m.webhook_queued.clone()))?;
    m.registry
        .register(Box::new(m.media_frames_skipped.clone()))?;
    Ok(m)
}

/// The process-wide metrics. Building them can only fail on a duplicate or malformed name, which
/// is a programming error caught by the first test that touches metrics.
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().unwrap_or_else(|e| panic!("metric definitions are invalid: {e}")));

/// The registry in Prometheus' text exposition format.
pub fn render() -> String {
    let families = METRICS.registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_is_rendered() {
        super::METRICS.sessions_total.inc();
        super::METRICS.errors.with_label_values(&["internal"]).inc();
        let text = super::render();
        assert!(text.contains("voxgate_sessions_total"));
        assert!(text.contains("voxgate_errors_total{code=\"internal\"}"));
    }
}
