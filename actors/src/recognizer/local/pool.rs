//! The bounded pool of decoder threads behind the local engine: [`LocalEngine`].
//!
//! Decoding is CPU-bound, so it never runs on an actor's event loop: each worker is a plain thread
//! that owns one loaded engine (loading is slow, so it happens once, when the worker starts). A
//! stream leases a worker for its whole life: its audio goes to the worker over a channel, the
//! worker's results come back over another, and the worker is idle again when the stream ends,
//! is cancelled, or its sender goes away. When every worker is busy a new stream is refused at once
//! ([`Busy`]) rather than queued behind streams that may last hours.
//!
//! A panic while decoding fails that stream only: the worker reports it, replaces its engine by a
//! freshly loaded one (its state may be half-updated) and serves the next stream.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::engine::{PocketSphinxEngine, Recognition, SpeechEngine};
use super::resample::AudioConverter;
use crate::audio::AudioFormat;
use crate::messages::StreamFailure;
use crate::settings::LocalSettings;

/// Loads one engine (on the worker's thread): at start-up and after a crash.
pub type EngineLoader = Arc<dyn Fn() -> Result<Box<dyn SpeechEngine>, String> + Send + Sync>;

/// What a stream sends its worker.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamInput {
    /// More audio, in the stream's declared format.
    Audio(Bytes),
    /// No more audio: finish, report the last final, then `Ended(Ok)`.
    End,
}

/// What a worker sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamOutput {
    Recognition(Recognition),
    /// The stream is over (exactly once, last).
    Ended(Result<(), StreamFailure>),
}

/// Every worker is decoding another stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the local speech engine is busy: all {workers} decoders are in use")]
pub struct Busy {
    pub workers: usize,
}

/// A stream's hold on a worker: audio in, results out. Dropping `input` (without
/// [`StreamInput::End`]) abandons the stream and frees the worker.
pub struct StreamLease {
    pub input: std_mpsc::Sender<StreamInput>,
    pub output: mpsc::UnboundedReceiver<StreamOutput>,
}

/// What a worker is handed for one stream.
struct StreamJob {
    format: AudioFormat,
    interim_results: bool,
    input: std_mpsc::Receiver<StreamInput>,
    output: mpsc::UnboundedSender<StreamOutput>,
}

struct PoolInner {
    /// Job queues of idle workers. A worker puts a fresh one here each time it becomes idle; when
    /// the pool is dropped they are dropped with it, and idle workers exit.
    idle: Mutex<Vec<std_mpsc::Sender<StreamJob>>>,
    /// Workers configured.
    size: usize,
    /// Workers alive (one that cannot reload its engine after a crash exits).
    alive: AtomicUsize,
}

/// The local speech engine: a pool of decoder threads. Cheap to clone and `Send`, so every actix
/// worker thread can hold one; all clones share the same workers.
#[derive(Clone)]
pub struct LocalEngine {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("workers", &self.workers())
            .field("idle", &self.idle_workers())
            .finish()
    }
}

impl LocalEngine {
    /// Starts the PocketSphinx engine of `settings`: `workers` threads (0 = one per CPU core),
    /// each loading the model once. Returns when all are loaded; the error (library or model
    /// missing, with the Debian package to install) comes from the first that failed.
    pub fn start(settings: &LocalSettings) -> Result<LocalEngine, String> {
        let workers = if settings.workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            settings.workers
        };
        let settings = settings.clone();
        let loader: EngineLoader = Arc::new(move || {
            PocketSphinxEngine::load(&settings).map(|e| Box::new(e) as Box<dyn SpeechEngine>)
        });
        let engine = LocalEngine::with_loader(workers, loader)?;
        info!(workers, "local speech engine ready");
        Ok(engine)
    }

    /// A pool of `workers` threads running engines from `loader` (tests pass scripted engines).
    pub fn with_loader(workers: usize, loader: EngineLoader) -> Result<LocalEngine, String> {
        let inner = Arc::new(PoolInner {
            idle: Mutex::new(Vec::new()),
            size: workers.max(1),
            alive: AtomicUsize::new(0),
        });
        let (loaded_tx, loaded_rx) = std_mpsc::channel::<Result<(), String>>();
        for index in 0..inner.size {
            let weak = Arc::downgrade(&inner);
            let loader = loader.clone();
            let loaded = loaded_tx.clone();
            std::thread::Builder::new()
                .name(format!("voxgate-decoder-{index}"))
                .spawn(move || worker(index, weak, loader, loaded))
                .map_err(|e| format!("cannot start a decoder thread: {e}"))?;
        }
        drop(loaded_tx);
        for _ in 0..inner.size {
            match loaded_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("a decoder thread exited while loading".to_string()),
            }
        }
        // Every worker is loaded; wait until each has also put its queue in the idle list, so a
        // lease right after start never sees a loaded worker as busy.
        loop {
            let idle = lock(&inner.idle).len();
            if idle >= inner.size {
                break;
            }
            std::thread::yield_now();
        }
        Ok(LocalEngine { inner })
    }

    /// Workers configured.
    pub fn workers(&self) -> usize {
        self.inner.size
    }

    /// Workers waiting for a stream now.
    pub fn idle_workers(&self) -> usize {
        lock(&self.inner.idle).len()
    }

    /// Leases an idle worker for one stream of audio in `format`, or fails at once with [`Busy`].
    pub fn lease(&self, format: AudioFormat, interim_results: bool) -> Result<StreamLease, Busy> {
        let (input_tx, input_rx) = std_mpsc::channel();
        let (output_tx, output_rx) = mpsc::unbounded_channel();
        let mut job = StreamJob {
            format,
            interim_results,
            input: input_rx,
            output: output_tx,
        };
        loop {
            let Some(queue) = lock(&self.inner.idle).pop() else {
                return Err(Busy {
                    workers: self.inner.size,
                });
            };
            match queue.send(job) {
                Ok(()) => {
                    return Ok(StreamLease {
                        input: input_tx,
                        output: output_rx,
                    })
                }
                // That worker is gone; try the next.
                Err(std_mpsc::SendError(returned)) => job = returned,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A worker thread: loads its engine, then serves one stream at a time until the pool is gone.
fn worker(
    index: usize,
    pool: Weak<PoolInner>,
    loader: EngineLoader,
    loaded: std_mpsc::Sender<Result<(), String>>,
) {
    let mut engine = match catch_unwind(AssertUnwindSafe(|| loader())) {
        Ok(Ok(engine)) => engine,
        Ok(Err(e)) => {
            let _ = loaded.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = loaded.send(Err("the decoder panicked while loading".to_string()));
            return;
        }
    };
    let _ = loaded.send(Ok(()));
    drop(loaded);
    if let Some(inner) = pool.upgrade() {
        inner.alive.fetch_add(1, Ordering::Relaxed);
    }
    loop {
        let (queue, jobs) = std_mpsc::channel::<StreamJob>();
        match pool.upgrade() {
            Some(inner) => lock(&inner.idle).push(queue),
            None => break,
        }
        // Returns an error once the pool (and with it this queue) is dropped.
        let Ok(job) = jobs.recv() else { break };
        let output = job.output.clone();
        match catch_unwind(AssertUnwindSafe(|| serve(engine.as_mut(), job))) {
            Ok(()) => {}
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                error!(worker = index, panic = %what, "local decoder crashed: reloading it");
                let _ = output.send(StreamOutput::Ended(Err(StreamFailure {
                    code: tonic::Code::Internal,
                    message: format!("the local decoder crashed: {what}"),
                })));
                match catch_unwind(AssertUnwindSafe(|| loader())) {
                    Ok(Ok(fresh)) => engine = fresh,
                    Ok(Err(e)) => {
                        error!(worker = index, error = %e, "local decoder could not be reloaded: worker stops");
                        break;
                    }
                    Err(_) => {
                        error!(
                            worker = index,
                            "local decoder panicked while reloading: worker stops"
                        );
                        break;
                    }
                }
            }
        }
    }
    if let Some(inner) = pool.upgrade() {
        let left = inner
            .alive
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        if left < inner.size {
            warn!(worker = index, alive = left, "local decoder worker exited");
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Serves one stream to its end (or until its sender goes away).
fn serve(engine: &mut dyn SpeechEngine, job: StreamJob) {
    let StreamJob {
        format,
        interim_results,
        input,
        output,
    } = job;
    let send_all = |results: Vec<Recognition>| {
        for r in results {
            let _ = output.send(StreamOutput::Recognition(r));
        }
    };
    let fail = |code: tonic::Code, message: String| {
        let _ = output.send(StreamOutput::Ended(Err(StreamFailure { code, message })));
    };
    let mut converter = match AudioConverter::new(format) {
        Ok(c) => c,
        Err(e) => return fail(tonic::Code::InvalidArgument, e.to_string()),
    };
    if let Err(e) = engine.begin(interim_results) {
        return fail(tonic::Code::Internal, format!("local decoder: {e}"));
    }
    let mut samples = Vec::new();
    loop {
        match input.recv() {
            Ok(StreamInput::Audio(bytes)) => {
                samples.clear();
                converter.push(&bytes, &mut samples);
                match engine.push(&samples) {
                    Ok(results) => send_all(results),
                    Err(e) => return fail(tonic::Code::Internal, format!("local decoder: {e}")),
                }
            }
            Ok(StreamInput::End) => {
                samples.clear();
                converter.finish(&mut samples);
                let last = engine.push(&samples).and_then(|mut results| {
                    results.extend(engine.finish()?);
                    Ok(results)
                });
                match last {
                    Ok(results) => {
                        send_all(results);
                        let _ = output.send(StreamOutput::Ended(Ok(())));
                    }
                    Err(e) => fail(tonic::Code::Internal, format!("local decoder: {e}")),
                }
                return;
            }
            // The stream was cancelled: nobody wants its results.
            Err(_) => return,
        }
    }
}
