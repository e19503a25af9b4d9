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
use std::sync::{mpsc as std_mpsc, Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

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
    /// The pool's size, for the message.
    pub workers: usize,
}

/// A stream's hold on a worker: audio in, results out. Dropping `input` (without
/// [`StreamInput::End`]) abandons the stream and frees the worker.
pub struct StreamLease {
    /// To the worker: audio, then `End`.
    pub input: std_mpsc::Sender<StreamInput>,
    /// From the worker: results, then exactly one `Ended`.
    pub output: mpsc::UnboundedReceiver<StreamOutput>,
}

/// What a worker is handed for one stream.
struct StreamJob {
    /// The stream's audio format (converted to 16 kHz by the worker).
    format: AudioFormat,
    /// Whether to report interim results.
    interim_results: bool,
    /// The stream's audio.
    input: std_mpsc::Receiver<StreamInput>,
    /// Where results go.
    output: mpsc::UnboundedSender<StreamOutput>,
}

struct PoolInner {
    /// Job queues of idle workers. A worker puts a fresh one here each time it becomes idle; when
    /// the pool is dropped they are dropped with it, and idle workers exit.
    idle: Mutex<Vec<std_mpsc::Sender<StreamJob>>>,
    /// Notified each time a worker becomes idle.
    idle_changed: Condvar,
    /// Workers configured.
    size: usize,
    /// Workers alive (one that cannot reload its engine after a crash exits).
    alive: AtomicUsize,
}

/// The local speech engine: a pool of decoder threads. Cheap to clone and `Send`, so every actix
/// worker thread can hold one; all clones share the same workers.
#[derive(Clone)]
pub struct LocalEngine {
    /// Shared by every clone and (weakly) by the workers.
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
            idle_changed: Condvar::new(),
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
        let engine = LocalEngine { inner };
        // Every worker is loaded; wait until each has also put its queue in the idle list, so a
        // lease right after start never sees a loaded worker as busy.
        if !engine.wait_idle(engine.inner.size, Duration::from_secs(60)) {
            return Err("the decoder threads did not become ready".to_string());
        }
        Ok(engine)
    }

    /// Blocks until at least `n` workers are idle, or `timeout` passes; whether they are.
    pub fn wait_idle(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut idle = lock(&self.inner.idle);
        while idle.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            idle = match self.inner.idle_changed.wait_timeout(idle, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
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
            Some(inner) => {
                lock(&inner.idle).push(queue);
                inner.idle_changed.notify_all();
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::{scripted, Script};
    use super::*;
    use crate::audio::Encoding;

    const WAIT: Duration = Duration::from_secs(10);

    fn linear16() -> AudioFormat {
        AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 16_000,
        }
    }

    fn pool(workers: usize, script: Script) -> LocalEngine {
        LocalEngine::with_loader(workers, scripted(script)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Receives outputs until `Ended` (or a timeout); returns them all.
    async fn until_ended(lease: &mut StreamLease) -> Vec<StreamOutput> {
        let mut got = Vec::new();
        while let Ok(Some(output)) = tokio::time::timeout(WAIT, lease.output.recv()).await {
            let ended = matches!(output, StreamOutput::Ended(_));
            got.push(output);
            if ended {
                break;
            }
        }
        got
    }

    /// Waits for `n` idle workers on a blocking thread (the workers are threads, not tasks).
    async fn wait_idle(engine: &LocalEngine, n: usize) {
        let engine = engine.clone();
        let ready = tokio::task::spawn_blocking(move || engine.wait_idle(n, WAIT)).await;
        assert_eq!(ready.ok(), Some(true), "{n} workers idle");
    }

    /// A stream's audio is converted and decoded in order, `End` gives the last final then a clean
    /// end, and the worker is free again.
    #[tokio::test]
    async fn a_stream_is_served_to_its_end() {
        let engine = pool(1, Script::Count);
        let Ok(mut lease) = engine.lease(linear16(), true) else {
            panic!("a worker is idle");
        };
        assert_eq!(engine.idle_workers(), 0);
        let _ = lease
            .input
            .send(StreamInput::Audio(Bytes::from(vec![0u8; 3_200])));
        let _ = lease
            .input
            .send(StreamInput::Audio(Bytes::from(vec![0u8; 1_601])));
        let _ = lease.input.send(StreamInput::End);
        let got = until_ended(&mut lease).await;
        let texts: Vec<String> = got
            .iter()
            .filter_map(|o| match o {
                StreamOutput::Recognition(r) => Some(r.transcript.clone()),
                StreamOutput::Ended(_) => None,
            })
            .collect();
        // The odd byte is carried, not lost, and never decoded as half a sample.
        assert_eq!(texts, vec!["1600", "800", "0", "total 2400"]);
        assert_eq!(got.last(), Some(&StreamOutput::Ended(Ok(()))));
        wait_idle(&engine, 1).await;
        assert_eq!(engine.idle_workers(), 1);
    }

    /// With every worker leased, the next stream is refused at once; a cancelled stream (its
    /// sender dropped) frees its worker for the next one.
    #[tokio::test]
    async fn busy_when_every_worker_is_leased() {
        let engine = pool(2, Script::Count);
        assert_eq!(engine.workers(), 2);
        let first = engine.lease(linear16(), true);
        let second = engine.lease(linear16(), true);
        assert!(first.is_ok() && second.is_ok());
        let third = engine.lease(linear16(), true);
        assert_eq!(third.err(), Some(Busy { workers: 2 }));
        drop(first);
        wait_idle(&engine, 1).await;
        assert!(
            engine.lease(linear16(), true).is_ok(),
            "the cancelled stream's worker is free"
        );
    }

    /// A decoder error fails the stream with INTERNAL (restartable) and the worker serves on.
    #[tokio::test]
    async fn decoder_error_fails_the_stream_only() {
        let engine = pool(1, Script::FailOnPush);
        let Ok(mut lease) = engine.lease(linear16(), true) else {
            panic!("idle");
        };
        let _ = lease
            .input
            .send(StreamInput::Audio(Bytes::from(vec![0u8; 320])));
        let got = until_ended(&mut lease).await;
        let Some(StreamOutput::Ended(Err(failure))) = got.last() else {
            panic!("{got:?}");
        };
        assert_eq!(failure.code, tonic::Code::Internal);
        assert!(failure.message.contains("scripted failure"), "{failure:?}");
        wait_idle(&engine, 1).await;
        assert!(engine.lease(linear16(), true).is_ok());
    }

    /// A panic in the decoder fails the stream with INTERNAL; the worker reloads its engine and
    /// serves the next stream.
    #[tokio::test]
    async fn worker_crash_fails_the_stream_and_the_worker_recovers() {
        let engine = pool(1, Script::PanicOnPush);
        for _ in 0..2 {
            wait_idle(&engine, 1).await;
            let Ok(mut lease) = engine.lease(linear16(), true) else {
                panic!("the worker came back");
            };
            let _ = lease
                .input
                .send(StreamInput::Audio(Bytes::from(vec![0u8; 320])));
            let got = until_ended(&mut lease).await;
            let Some(StreamOutput::Ended(Err(failure))) = got.last() else {
                panic!("{got:?}");
            };
            assert_eq!(failure.code, tonic::Code::Internal);
            assert!(failure.message.contains("crashed"), "{failure:?}");
        }
    }

    /// Audio the engine cannot decode is refused as INVALID_ARGUMENT (not restartable).
    #[tokio::test]
    async fn compressed_audio_is_an_invalid_argument() {
        let engine = pool(1, Script::Count);
        let opus = AudioFormat {
            encoding: Encoding::OggOpus,
            sample_rate_hz: 48_000,
        };
        let Ok(mut lease) = engine.lease(opus, true) else {
            panic!("idle");
        };
        let got = until_ended(&mut lease).await;
        let Some(StreamOutput::Ended(Err(failure))) = got.last() else {
            panic!("{got:?}");
        };
        assert_eq!(failure.code, tonic::Code::InvalidArgument);
        assert!(failure.message.contains("OGG_OPUS"));
    }

    /// An engine that cannot load fails the start with its error.
    #[test]
    fn load_failure_fails_the_start() {
        let loader: EngineLoader = Arc::new(|| Err("model missing: install it".to_string()));
        let result = LocalEngine::with_loader(2, loader);
        assert_eq!(result.err(), Some("model missing: install it".to_string()));
    }
}
