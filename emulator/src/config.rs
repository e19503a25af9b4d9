//! What an emulator instance enforces and injects: Google's limits (defaults as Google's) and the
//! faults a test or a developer asks for. Built from the command line or directly by tests and by
//! `voxgate serve`, which embeds the emulator.

use std::time::Duration;

pub use crate::oauth::AuthConfig;
pub use crate::tls::TlsIdentity;

pub use super::recognizer::RecognizerKind;

/// A failure injected into a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The stream ends with this gRPC status (Google-like message).
    Status(tonic::Code),
    /// The TCP connection is cut: every stream on it fails, as on a real network drop.
    Drop,
}

impl FaultKind {
    /// Parses a gRPC code name (`UNAVAILABLE`, case-insensitive) or `drop`.
    pub fn parse(name: &str) -> Result<FaultKind, String> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("drop") {
            return Ok(FaultKind::Drop);
        }
        match voxgate_actors::settings::parse_grpc_code(name) {
            Some(tonic::Code::Ok) => Err("OK is not a fault".to_string()),
            Some(code) => Ok(FaultKind::Status(code)),
            None => Err(format!(
                "unknown fault {name:?} (expected a gRPC code name such as UNAVAILABLE, or drop)"
            )),
        }
    }

    /// Parses a comma-separated list (`UNAVAILABLE,INTERNAL,drop`).
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        list.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(FaultKind::parse)
            .collect()
    }
}

/// Random per-stream failures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultConfig {
    /// Mean audio a stream carries before it fails (exponentially distributed); `None`: no faults.
    pub every: Option<Duration>,
    /// The faults to draw from, uniformly.
    pub kinds: Vec<FaultKind>,
    /// Seed of the fault generator, for reproducible runs; `None`: seeded from the OS.
    pub seed: Option<u64>,
}

/// A full outage: streams open at its start fail, new ones are refused until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When it starts, measured from the emulator's start.
    pub after: Duration,
    pub duration: Duration,
}

/// Which Speech API versions the emulator serves (`--apis v1,v2`); calls to the other get
/// `UNIMPLEMENTED`, as from a server without that service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apis {
    pub v1: bool,
    pub v2: bool,
}

impl Default for Apis {
    fn default() -> Self {
        Apis { v1: true, v2: true }
    }
}

impl Apis {
    /// Parses a comma-separated list of `v1`, `v2` (at least one).
    pub fn parse(list: &str) -> Result<Apis, String> {
        let mut apis = Apis {
            v1: false,
            v2: false,
        };
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "v1" => apis.v1 = true,
                "v2" => apis.v2 = true,
                _ => return Err(format!("unknown API {item:?} (expected v1 and/or v2)")),
            }
        }
        if !(apis.v1 || apis.v2) {
            return Err("no API to serve (expected v1 and/or v2)".to_string());
        }
        Ok(apis)
    }
}

/// Every knob of the emulator. `Default` is Google's behaviour with no faults.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    /// Longest stream (wall time since it opened): `OUT_OF_RANGE` beyond. Google: 305 s.
    pub stream_limit: Duration,
    /// Longest time without audio: `OUT_OF_RANGE` "Audio Timeout Error". Google: about 10 s.
    pub audio_timeout: Duration,
    /// Largest `audio_content` of one request: `INVALID_ARGUMENT` beyond. Google: 25 600 bytes.
    pub max_request_bytes: usize,
    /// v2: largest `audio` of one request. Google's quotas page: 25 KB (the proto says 15 KB).
    pub v2_max_request_bytes: usize,
    /// v2: the location this endpoint stands for (`global`, `us`, `europe-west4`, …); a recognizer
    /// name with another location is refused as Google refuses it.
    pub v2_location: String,
    /// The API versions served.
    pub apis: Apis,
    /// Audio may run ahead of the wall clock by this much plus `(realtime_factor − 1) × elapsed`
    /// ("streamed too fast" beyond). Google's threshold is unpublished.
    pub burst: Duration,
    /// See `burst`; 1.0 means "no faster than real time after the burst".
    pub realtime_factor: f64,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`. Google front ends: 100.
    pub max_streams_per_connection: u32,
    pub faults: FaultConfig,
    /// Every response (and the closing status) is held back this long.
    pub response_delay: Duration,
    /// For this long after the start, new streams get `UNAVAILABLE`.
    pub refuse_streams_for: Duration,
    pub outage: Option<Outage>,
    /// What recognises the audio: the synthetic codec, or the local PocketSphinx engine.
    pub recognizer: RecognizerKind,
    /// Serve TLS (ALPN h2) with this certificate, as Google's front ends; `None`: plaintext.
    pub tls: Option<TlsIdentity>,
    /// Stand in for Google's OAuth too: calls need a token from the emulator's token endpoint.
    pub auth: Option<AuthConfig>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            stream_limit: Duration::from_secs(305),
            audio_timeout: Duration::from_secs(10),
            max_request_bytes: 25_600,
            v2_max_request_bytes: 25_600,
            v2_location: "global".to_string(),
            apis: Apis::default(),
            burst: Duration::from_secs(10),
            realtime_factor: 2.0,
            max_streams_per_connection: 100,
            faults: FaultConfig::default(),
            response_delay: Duration::ZERO,
            refuse_streams_for: Duration::ZERO,
            outage: None,
            recognizer: RecognizerKind::Synthetic,
            tls: None,
            auth: None,
        }
    }
}

impl EmulatorConfig {
    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.stream_limit.is_zero() {
            return Err("stream limit must be positive".into());
        }
        if self.audio_timeout.is_zero() {
            return Err("audio timeout must be positive".into());
        }
        if self.max_request_bytes == 0 || self.v2_max_request_bytes == 0 {
            return Err("max request bytes must be positive".into());
        }
        if self.v2_location.trim().is_empty() || self.v2_location.contains('/') {
            return Err(format!(
                "v2 location {:?} is not a location",
                self.v2_location
            ));
        }
        if !(self.apis.v1 || self.apis.v2) {
            return Err("no API to serve".into());
        }
        if !(self.realtime_factor >= 1.0 && self.realtime_factor.is_finite()) {
            return Err(format!(
                "realtime factor must be at least 1.0 (got {})",
                self.realtime_factor
            ));
        }
        if self.max_streams_per_connection == 0 {
            return Err("max streams per connection must be at least 1".into());
        }
        match (self.faults.every, self.faults.kinds.is_empty()) {
            (Some(every), _) if every.is_zero() => {
                return Err("fault interval must be positive".into());
            }
            (Some(_), true) => return Err("fault interval given without fault codes".into()),
            (None, false) => return Err("fault codes given without a fault interval".into()),
            _ => {}
        }
        Ok(())
    }
}

/// Seconds (from the command line) to a duration, with a message naming the flag.
pub(crate) fn secs(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{flag}: {value} is not a valid number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_codes_and_drop() {
        assert_eq!(
            FaultKind::parse_list("UNAVAILABLE, internal,drop"),
            Ok(vec![
                FaultKind::Status(tonic::Code::Unavailable),
                FaultKind::Status(tonic::Code::Internal),
                FaultKind::Drop
            ])
        );
        assert!(FaultKind::parse_list("UNAVAILABLE,NOPE").is_err());
        assert!(FaultKind::parse("ok").is_err());
    }

    #[test]
    fn api_lists_parse_and_need_one() {
        assert_eq!(Apis::parse("v1,v2"), Ok(Apis::default()));
        assert_eq!(
            Apis::parse(" V2 "),
            Ok(Apis {
                v1: false,
                v2: true
            })
        );
        assert!(Apis::parse("").is_err());
        assert!(Apis::parse("v3").is_err());
    }

    #[test]
    fn defaults_are_valid_and_inconsistent_faults_are_not() {
        assert_eq!(EmulatorConfig::default().validate(), Ok(()));
        let mut config = EmulatorConfig::default();
        config.faults.every = Some(Duration::from_secs(1));
        assert!(config.validate().is_err());
        config.faults.kinds = vec![FaultKind::Drop];
        assert_eq!(config.validate(), Ok(()));
        config.realtime_factor = 0.5;
        assert!(config.validate().is_err());
    }
}
