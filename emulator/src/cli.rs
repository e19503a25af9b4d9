//! `voxgate emulator`: serve the emulator until SIGINT/SIGTERM, `voxgate emulator encode` to write
//! synthetic audio for a text to stdout, or `voxgate emulator make-credentials` to write a
//! service-account key file that `--require-auth` accepts.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use voxgate_actors::settings::LocalSettings;

use super::config::{secs, Apis, EmulatorConfig, FaultConfig, FaultKind, Outage, RecognizerKind};
use super::make_credentials;
use super::oauth::{Account, AuthConfig};
use super::server::spawn;
use super::synth::{self, SynthEncoding};
use super::tls::TlsIdentity;

/// `voxgate emulator` arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EmulatorArgs {
    #[command(subcommand)]
    pub command: Option<EmulatorCommand>,
    #[command(flatten)]
    pub serve: ServeEmulatorArgs,
}

/// `voxgate emulator` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum EmulatorCommand {
    /// Write the synthetic audio the emulator recognises as TEXT to stdout (raw, mono).
    Encode(EncodeArgs),
    /// Write a service-account key file with a fresh key pair to stdout, for `--require-auth`
    /// and for the gateway's GOOGLE_APPLICATION_CREDENTIALS.
    MakeCredentials(MakeCredentialsArgs),
}

/// `voxgate emulator make-credentials` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct MakeCredentialsArgs {
    /// The emulator's token endpoint, written as the key file's `token_uri`
    /// (e.g. https://127.0.0.1:50052/token with `--token-listen 127.0.0.1:50052`).
    #[arg(long)]
    pub token_uri: String,
}

/// `voxgate emulator encode` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EncodeArgs {
    /// The words to say; `.` `,` `!` `?` end an utterance (a final result).
    pub text: String,
    /// Sample rate in Hz (8000–48000).
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
    /// `linear16` (16-bit little-endian), `mulaw` or `alaw`.
    #[arg(long, default_value = "linear16", value_parser = parse_encoding)]
    pub encoding: SynthEncoding,
}

fn parse_encoding(name: &str) -> Result<SynthEncoding, String> {
    SynthEncoding::parse(name).ok_or_else(|| format!("{name:?}: expected linear16, mulaw or alaw"))
}

/// `voxgate emulator --recognizer`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecognizerChoice {
    /// The synthetic tone codec (`voxgate emulator encode`; exact words, for tests).
    Synthetic,
    /// Real speech, recognised by the local PocketSphinx engine (Debian's en-us model).
    Pocketsphinx,
}

/// Flags of the emulator server (defaults are Google's behaviour).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeEmulatorArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Longest stream, in seconds of wall time (OUT_OF_RANGE beyond).
    #[arg(long, default_value_t = 305.0)]
    pub stream_limit_secs: f64,
    /// Longest time without audio (OUT_OF_RANGE "Audio Timeout Error").
    #[arg(long, default_value_t = 10.0)]
    pub audio_timeout_secs: f64,
    /// Largest audio per request (INVALID_ARGUMENT beyond).
    #[arg(long, default_value_t = 25_600)]
    pub max_request_bytes: usize,
    /// The Speech API versions to serve on the port (the other gets UNIMPLEMENTED).
    #[arg(long, default_value = "v1,v2")]
    pub apis: String,
    /// v2: largest audio per request (Google's quotas page: 25 KB; the proto: 15 KB).
    #[arg(long, default_value_t = 25_600)]
    pub v2_max_request_bytes: usize,
    /// v2: the location this endpoint stands for; recognizer names must name it.
    #[arg(long, default_value = "global")]
    pub v2_location: String,
    /// How far audio may run ahead of the wall clock at first ("streamed too fast" beyond)…
    #[arg(long, default_value_t = 10.0)]
    pub burst_secs: f64,
    /// …and how much faster than real time it may arrive on average after that.
    #[arg(long, default_value_t = 2.0)]
    pub realtime_factor: f64,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub max_streams_per_connection: u32,
    /// Inject faults: each stream fails after this much audio on average (exponential).
    #[arg(long, requires = "fault_codes")]
    pub fault_every_secs: Option<f64>,
    /// Faults to draw from: gRPC code names and/or `drop` (cut the TCP connection).
    #[arg(long, requires = "fault_every_secs")]
    pub fault_codes: Option<String>,
    /// Seed for reproducible faults.
    #[arg(long)]
    pub fault_seed: Option<u64>,
    /// Hold every response back this long.
    #[arg(long, default_value_t = 0)]
    pub response_delay_ms: u64,
    /// Refuse new streams with UNAVAILABLE for this long after start.
    #[arg(long, default_value_t = 0.0)]
    pub refuse_streams_secs: f64,
    /// Start a full outage this long after start…
    #[arg(long, requires = "outage_secs")]
    pub outage_after_secs: Option<f64>,
    /// …lasting this long.
    #[arg(long, requires = "outage_after_secs")]
    pub outage_secs: Option<f64>,
    /// What recognises the audio.
    #[arg(long, value_enum, default_value = "synthetic")]
    pub recognizer: RecognizerChoice,
    /// Decoder threads of the pocketsphinx recogniser (0 = one per CPU core); a stream that finds
    /// none free is refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 0)]
    pub pocketsphinx_workers: usize,
    /// Serve TLS (ALPN h2, as Google's front ends) with this certificate chain (PEM)…
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// …and its private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// Stand in for Google's OAuth too: run a token endpoint that grants tokens to this service
    /// account (its key file, e.g. from `make-credentials`), and refuse calls without a valid one.
    #[arg(long)]
    pub require_auth: Option<String>,
    /// Where the token endpoint listens (port 0: any free port); its URL is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:50052", requires = "require_auth")]
    pub token_listen: SocketAddr,
    /// How long a granted access token is valid (Google: 3600).
    #[arg(long, default_value_t = 3600, requires = "require_auth")]
    pub token_ttl_secs: u64,
    /// The token endpoint answers 503 for this long after start (an OAuth outage).
    #[arg(long, default_value_t = 0.0, requires = "require_auth")]
    pub token_unavailable_secs: f64,
}

impl ServeEmulatorArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> Result<EmulatorConfig, String> {
        let outage = match (self.outage_after_secs, self.outage_secs) {
            (Some(after), Some(duration)) => Some(Outage {
                after: secs("outage-after-secs", after)?,
                duration: secs("outage-secs", duration)?,
            }),
            _ => None,
        };
        let config = EmulatorConfig {
            stream_limit: secs("stream-limit-secs", self.stream_limit_secs)?,
            audio_timeout: secs("audio-timeout-secs", self.audio_timeout_secs)?,
            max_request_bytes: self.max_request_bytes,
            v2_max_request_bytes: self.v2_max_request_bytes,
            v2_location: self.v2_location.clone(),
            apis: Apis::parse(&self.apis).map_err(|e| format!("--apis: {e}"))?,
            burst: secs("burst-secs", self.burst_secs)?,
            realtime_factor: self.realtime_factor,
            max_streams_per_connection: self.max_streams_per_connection,
            faults: FaultConfig {
                every: self
                    .fault_every_secs
                    .map(|s| secs("fault-every-secs", s))
                    .transpose()?,
                kinds: match &self.fault_codes {
                    Some(list) => {
                        FaultKind::parse_list(list).map_err(|e| format!("--fault-codes: {e}"))?
                    }
                    None => Vec::new(),
                },
                seed: self.fault_seed,
            },
            response_delay: Duration::from_millis(self.response_delay_ms),
            refuse_streams_for: secs("refuse-streams-secs", self.refuse_streams_secs)?,
            outage,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsIdentity::from_files(cert, key)?),
                _ => None,
            },
            auth: self.auth_config()?,
            recognizer: match self.recognizer {
                RecognizerChoice::Synthetic => RecognizerKind::Synthetic,
                RecognizerChoice::Pocketsphinx => RecognizerKind::PocketSphinx(LocalSettings {
                    workers: self.pocketsphinx_workers,
                    ..LocalSettings::default()
                }),
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn auth_config(&self) -> Result<Option<AuthConfig>, String> {
        let Some(key_file) = &self.require_auth else {
            return Ok(None);
        };
        if self.token_ttl_secs == 0 {
            return Err("--token-ttl-secs must be positive".to_string());
        }
        Ok(Some(AuthConfig {
            account: Account::from_key_file(key_file)?,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            token_listen: self.token_listen,
            token_unavailable_for: secs("token-unavailable-secs", self.token_unavailable_secs)?,
        }))
    }
}

/// Runs `voxgate emulator …`.
pub fn run(args: EmulatorArgs) -> Result<(), String> {
    match args.command {
        Some(EmulatorCommand::Encode(encode)) => run_encode(&encode),
        Some(EmulatorCommand::MakeCredentials(args)) => {
            let file = make_credentials::key_file(&args.token_uri)?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{file}")
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("writing the key file: {e}"))
        }
        None => run_server(&args.serve),
    }
}

fn run_encode(args: &EncodeArgs) -> Result<(), String> {
    if !(8_000..=48_000).contains(&args.rate) {
        return Err(format!("--rate {}: must be 8000–48000 Hz", args.rate));
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() {
        return Err("refusing to write binary audio to a terminal: redirect stdout".to_string());
    }
    let audio = synth::encode(&args.text, args.rate, args.encoding);
    stdout
        .write_all(&audio)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing audio: {e}"))
}

fn run_server(args: &ServeEmulatorArgs) -> Result<(), String> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let mut emulator = spawn(listener, config).await?;
        let mut stdout = std::io::stdout();
        // Before `listening on`: a test reading stdout knows both addresses at that line.
        if let Some(url) = emulator.token_url() {
            writeln!(stdout, "token endpoint {url}").map_err(|e| format!("stdout: {e}"))?;
        }
        writeln!(stdout, "listening on {}", emulator.local_addr())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))?;
        tokio::select! {
            signal = termination() => {
                signal?;
                tracing::info!("signal received, shutting down");
                emulator.shutdown().await
            }
            stopped = emulator.stopped() => stopped,
        }
    })
}

/// Completes at SIGINT or SIGTERM.
async fn termination() -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate =
            signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(|e| format!("SIGINT handler: {e}")),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| format!("Ctrl-C handler: {e}"))
    }
}
