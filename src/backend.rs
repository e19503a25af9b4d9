//! The recogniser behind the sessions (`[recognizer] backend`): what each worker thread's pipeline
//! factory is built from, and what the backend needs for the life of the process.
//!
//! - `google`: Google Speech-to-Text at `[google] endpoint`, v1 or v2 by `[google] api`,
//!   credentials looked up once here.
//! - `emulator`: the project's Google-compatible emulator, started inside the process on a
//!   loopback port; sessions reach it through the same Google client code as Google itself.
//! - `local`: the offline engine of `[local] engine` (cargo feature `local`), Moonshine or
//!   PocketSphinx: its workers are loaded here once (a missing library or model stops the
//!   start-up, naming what to install) and shared by every worker thread's recognizer factory.

use std::rc::Rc;
use std::sync::Arc;

use voxgate_actors::circuit_breaker::CircuitBreaker;
use voxgate_actors::pipeline::{Pipeline, PipelineFactory};
use voxgate_actors::recognizer::google_auth::Credentials;
use voxgate_actors::recognizer::google_v1::pool::GoogleEndpoint;
use voxgate_actors::recognizer::google_v1::GoogleRecognizerFactory;
use voxgate_actors::recognizer::google_v2::{self, RecognizerPath, V2};
use voxgate_actors::recognizer::RecognizerFactory;
use voxgate_actors::settings::{GoogleApi, GoogleAuth, GoogleSettings};

use crate::config::{Backend, Config};
use voxgate_emulator::{EmulatorConfig, EmulatorHandle};

/// The project of v2 recognizer names sent to the embedded emulator when `[google] project` is unset.
const EMULATOR_PROJECT: &str = "voxgate-emulator";

/// Builds, once per worker thread, the pipeline factory every session of that worker uses.
pub type PipelineFactoryMaker = Arc<dyn Fn() -> Rc<dyn PipelineFactory> + Send + Sync>;

/// A started backend. Keep it for as long as the server runs.
pub struct RunningBackend {
    pub pipelines: PipelineFactoryMaker,
    /// The in-process emulator of `backend = "emulator"`; stopped when this is dropped.
    emulator: Option<EmulatorHandle>,
}

impl RunningBackend {
    /// Stops what the backend started (the embedded emulator).
    pub async fn shutdown(self) {
        if let Some(emulator) = self.emulator {
            if let Err(e) = emulator.shutdown().await {
                tracing::warn!("embedded emulator: {e}");
            }
        }
    }
}

/// Starts the configured backend (inside the current tokio runtime).
pub async fn start(config: &Config) -> Result<RunningBackend, String> {
    let mut google = config.google.clone();
    let mut emulator = None;
    let credentials = match config.recognizer.backend {
        Backend::Google => {
            let credentials = Credentials::from_settings(&google)
                .await
                .map_err(|e| e.to_string())?;
            // Speech v2: `[google] project`, else the one the credentials name.
            if google.api == GoogleApi::V2 && google.project.is_none() {
                let project = credentials.project().ok_or_else(|| {
                    format!("google.project: {}", crate::config::V2_PROJECT_REQUIRED)
                })?;
                tracing::info!(project, "Speech v2 project from the credentials");
                google.project = Some(project.to_string());
            }
            credentials
        }
        Backend::Local => return start_local(config).await,
        Backend::Emulator => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("embedded emulator: cannot listen on loopback: {e}"))?;
            let handle = voxgate_emulator::spawn(listener, EmulatorConfig::default()).await?;
            tracing::info!(endpoint = %handle.endpoint(), "embedded emulator started");
            google = GoogleSettings {
                endpoint: handle.endpoint(),
                auth: GoogleAuth::None,
                // The emulator stands for the global location; any project will do.
                location: "global".to_string(),
                project: google
                    .project
                    .or_else(|| Some(EMULATOR_PROJECT.to_string())),
                ..google
            };
            emulator = Some(handle);
            Credentials::none()
        }
    };
    let v2 = match google.api {
        GoogleApi::V1 => None,
        GoogleApi::V2 => {
            google.endpoint = google.v2_endpoint();
            let path = RecognizerPath {
                project: google.project.clone().unwrap_or_default(),
                location: google.location.clone(),
                recognizer: google.recognizer.clone(),
            };
            Some(V2::new(&path)?)
        }
    };
    let endpoint = GoogleEndpoint::new(&google).map_err(|e| e.to_string())?;
    let (mut audio, supervision) = (config.audio.clone(), config.supervision.clone());
    if v2.is_some() {
        // v2's per-request audio limit is lower than v1's.
        audio.max_request_bytes = audio.max_request_bytes.min(google_v2::MAX_REQUEST_BYTES);
    }
    let ack_interval_ms = config.session.ack_interval_ms;
    // One breaker for the whole process: every worker's sessions see the same upstream.
    let breaker = Arc::new(CircuitBreaker::from_settings(&supervision));
    let pipelines: PipelineFactoryMaker = Arc::new(move || {
        let recognizers: Rc<dyn RecognizerFactory> = match &v2 {
            None => Rc::new(GoogleRecognizerFactory::new(&endpoint, credentials.clone())),
            Some(api) => Rc::new(google_v2::factory(
                &endpoint,
                credentials.clone(),
                api.clone(),
            )),
        };
        Rc::new(Pipeline {
            recognizers,
            audio: audio.clone(),
            supervision: supervision.clone(),
            breaker: breaker.clone(),
            ack_interval_ms,
        }) as Rc<dyn PipelineFactory>
    });
    Ok(RunningBackend {
        pipelines,
        emulator,
    })
}

/// 100 days: longer than `[session] max_session_secs` can sensibly be, short enough for timers.
#[cfg(feature = "local")]
const LOCAL_NO_ROTATION_SECS: f64 = 100.0 * 86_400.0;

/// `backend = "local"`: loads the engine of `[local] engine` (off the event loop: loading takes
/// a while). A missing model or library stops the start-up with what to install.
#[cfg(feature = "local")]
async fn start_local(config: &Config) -> Result<RunningBackend, String> {
    use voxgate_actors::recognizer::local::{moonshine, pocketsphinx, SegmentRecognizerFactory};
    use voxgate_actors::settings::LocalEngineKind;

    let settings = config.local.clone();
    let kind = settings.engine;
    // Both engines decode segments on one shared pool of workers.
    let engine = tokio::task::spawn_blocking(move || match kind {
        LocalEngineKind::Moonshine => moonshine::start(&settings),
        LocalEngineKind::Pocketsphinx => pocketsphinx::start(&settings),
    })
    .await
    .map_err(|e| format!("local speech engine: loading failed: {e}"))??;
    let recognizers = move || {
        Rc::new(SegmentRecognizerFactory::new(engine.clone()))
            as Rc<dyn voxgate_actors::recognizer::RecognizerFactory>
    };
    tracing::info!(engine = ?kind, "local speech engine ready");
    let audio = config.audio.clone();
    // The local engine has no stream-duration limit: its streams are never rotated (a rotation
    // would only cut a segment for nothing). Far beyond any session's length.
    let supervision = voxgate_actors::settings::SupervisionSettings {
        rotate_after_secs: LOCAL_NO_ROTATION_SECS,
        max_stream_secs: LOCAL_NO_ROTATION_SECS,
        ..config.supervision.clone()
    };
    let ack_interval_ms = config.session.ack_interval_ms;
    let breaker = Arc::new(CircuitBreaker::from_settings(&supervision));
    let pipelines: PipelineFactoryMaker = Arc::new(move || {
        Rc::new(Pipeline {
            recognizers: recognizers(),
            audio: audio.clone(),
            supervision: supervision.clone(),
            breaker: breaker.clone(),
            ack_interval_ms,
        }) as Rc<dyn PipelineFactory>
    });
    Ok(RunningBackend {
        pipelines,
        emulator: None,
    })
}

/// `backend = "local"` in a build without the engine: a clear start-up error.
#[cfg(not(feature = "local"))]
async fn start_local(_config: &Config) -> Result<RunningBackend, String> {
    Err(
        "[recognizer] backend = \"local\": this voxgate was built without the local speech \
         engine (cargo feature `local`); rebuild with default features, or set backend = \
         \"google\" or \"emulator\""
            .to_string(),
    )
}
