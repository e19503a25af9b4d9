//! The shared inference workers of the segment engines: [`Scheduler`].
//!
//! Streams are not threads. A fixed pool of worker threads (one per core by default), each owning
//! one loaded model, decodes whole speech segments for every stream of the process. A stream
//! registers once ([`Scheduler::open`]) and submits jobs through its [`StreamTicket`]:
//!
//! - finals (a closed segment) are queued, in order, and always decoded;
//! - an interim (the open segment so far) is accepted only when a worker is idle and nothing else
//!   is waiting, and is otherwise refused on the spot — skipped, never queued.
//!
//! A stream has at most one job on a worker at a time, so its results come back in order. Workers
//! take finals before interims, and streams with finals waiting in turn (round-robin), so one
//! talkative stream cannot starve the others.
//!
//! Admission ([`Scheduler::admit`]) is by measured load, not a count of streams: a new stream is
//! refused only when decoding finals already keeps the workers busier than `max_load` over the
//! last seconds, or finals waited for a worker longer than `max_queue_wait` on average over those
//! seconds (a burst of segments ending together is not overload), or one has been waiting four
//! times that long right now (the workers are stuck). Interims do not count: they are shed first.
//!
//! A panic while decoding fails that job only (the stream gets an error and is restarted by its
//! supervisor); the worker reloads its model, since its state may be half-updated.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, info};

use super::decoded::DecodedSegment;

/// What a worker's model does: decode one whole segment (16 kHz samples in [−1, 1]).
pub trait SegmentDecoder: Send {
    fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String>;
}

/// Loads one model (on the worker's thread): at start-up and after a crash.
pub type DecoderLoader = Arc<dyn Fn() -> Result<Box<dyn SegmentDecoder>, String> + Send + Sync>;

/// Whether a job decides a final result or an interim one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Final,
    Interim,
}

/// A decoded job, back to its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    /// The stream's own id of the job.
    pub job: u64,
    pub kind: JobKind,
    /// The decoding, or why it failed.
    pub decoded: Result<DecodedSegment, String>,
}

/// The scheduler's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerSettings {
    /// Worker threads (≥ 1).
    pub workers: usize,
    /// Share of the workers' time decoding finals above which new streams are refused.
    pub max_load: f64,
    /// A final waiting longer than this for a worker refuses new streams.
    pub max_queue_wait: Duration,
}

/// A new stream was refused: the workers cannot take more.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the local speech engine is busy: decoding finals keeps its {workers} workers {load_percent:.0} % busy, \
     finals wait {mean_wait_ms} ms for a worker on average and the oldest now {queue_wait_ms} ms \
     (limits {max_load_percent:.0} %, {max_queue_wait_ms} ms)"
)]
pub struct Overloaded {
    pub workers: usize,
    pub load_percent: f64,
    pub mean_wait_ms: u64,
    pub queue_wait_ms: u64,
    pub max_load_percent: f64,
    pub max_queue_wait_ms: u64,
}

/// The window the load is measured over, in buckets of `LOAD_BUCKET`.
const LOAD_BUCKETS: usize = 20;
const LOAD_BUCKET: Duration = Duration::from_millis(250);

/// Finals of one bucket: time decoding, time waiting for a worker, how many.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    index: u64,
    busy: Duration,
    waited: Duration,
    finals: u32,
}

/// Time the workers spent decoding finals, and finals spent waiting, per recent bucket.
#[derive(Debug)]
struct LoadMeter {
    origin: Instant,
    /// The latest buckets, by index since `origin`.
    buckets: VecDeque<Bucket>,
}

impl LoadMeter {
    fn bucket(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_millis() / LOAD_BUCKET.as_millis()) as u64
    }

    /// A final that waited `waited` for a worker and was decoded from `start` to `end`.
    fn record(&mut self, waited: Duration, start: Instant, end: Instant) {
        // Charged to the bucket it ended in: the window is long against one job.
        let index = self.bucket(end);
        if self.buckets.back().is_none_or(|b| b.index != index) {
            self.buckets.push_back(Bucket {
                index,
                ..Bucket::default()
            });
        }
        if let Some(bucket) = self.buckets.back_mut() {
            bucket.busy += end.saturating_duration_since(start);
            bucket.waited += waited;
            bucket.finals += 1;
        }
        while self.buckets.len() > LOAD_BUCKETS {
            self.buckets.pop_front();
        }
    }

    /// The buckets inside the window ending now.
    fn window(&self, now: Instant) -> impl Iterator<Item = &Bucket> {
        let first = self.bucket(now).saturating_sub(LOAD_BUCKETS as u64 - 1);
        self.buckets.iter().filter(move |b| b.index >= first)
    }

    /// Mean wait of the finals decoded in the window ending now (zero without any).
    fn mean_wait(&self, now: Instant) -> Duration {
        let (waited, finals) = self.window(now).fold((Duration::ZERO, 0u32), |(w, n), b| {
            (w + b.waited, n + b.finals)
        });
        waited.checked_div(finals).unwrap_or_default()
    }

    /// Share of `workers` workers' time spent on finals over the window ending now.
    fn load(&self, workers: usize, now: Instant) -> f64 {
        let busy: Duration = self.window(now).map(|b| b.busy).sum();
        // Early in the process the window is only as long as the process.
        let window = (LOAD_BUCKET * LOAD_BUCKETS as u32)
            .min(now.saturating_duration_since(self.origin).max(LOAD_BUCKET));
        busy.as_secs_f64() / (window.as_secs_f64() * workers as f64)
    }
}

/// A queued job.
struct Job {
    id: u64,
    kind: JobKind,
    samples: Vec<f32>,
    queued_at: Instant,
}

/// A registered stream's jobs.
struct StreamJobs {
    finals: VecDeque<Job>,
    interim: Option<Job>,
    /// A job of this stream is on a worker.
    running: bool,
    results: mpsc::UnboundedSender<JobResult>,
}

#[derive(Default)]
struct State {
    streams: HashMap<u64, StreamJobs>,
    /// Streams with finals waiting and none running, in turn order.
    final_turns: VecDeque<u64>,
    /// Streams with an interim waiting and none running.
    interim_turns: VecDeque<u64>,
    idle_workers: usize,
    next_stream: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued (and when the scheduler is dropped).
    work: Condvar,
    load: Mutex<LoadMeter>,
    settings: SchedulerSettings,
}

/// The worker pool. Cheap to clone and `Send`: every actix worker thread holds one; the workers
/// exit when the last clone is dropped.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
    /// Dropped with the last clone: tells the workers to exit.
    _alive: Arc<Alive>,
}

/// Wakes the workers when the last [`Scheduler`] is dropped.
struct Alive(Weak<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            // Under the lock: a worker between its check and its wait cannot miss this.
            let _state = lock(&shared.state);
            shared.work.notify_all();
        }
    }
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("workers", &self.shared.settings.workers)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Scheduler {
    /// Starts `settings.workers` workers, each loading a model with `loader`; returns when all
    /// are loaded, or the first loading error.
    pub fn start(settings: SchedulerSettings, loader: DecoderLoader) -> Result<Scheduler, String> {
        let settings = SchedulerSettings {
            workers: settings.workers.max(1),
            ..settings
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            load: Mutex::new(LoadMeter {
                origin: Instant::now(),
                buckets: VecDeque::new(),
            }),
            settings,
        });
        let alive = Arc::new(Alive(Arc::downgrade(&shared)));
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        for index in 0..settings.workers {
            let shared = shared.clone();
            let alive = Arc::downgrade(&alive);
            let loader = loader.clone();
            let loaded = loaded_tx.clone();
            std::thread::Builder::new()
                .name(format!("voxgate-infer-{index}"))
                .spawn(move || worker(index, shared, alive, loader, loaded))
                .map_err(|e| format!("cannot start an inference thread: {e}"))?;
        }
        drop(loaded_tx);
        for _ in 0..settings.workers {
            match loaded_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("an inference thread exited while loading".to_string()),
            }
        }
        info!(workers = settings.workers, "local inference workers ready");
        Ok(Scheduler {
            shared,
            _alive: alive,
        })
    }

    /// Workers in the pool.
    pub fn workers(&self) -> usize {
        self.shared.settings.workers
    }

    /// Whether a new stream can be served now (see the module doc).
    pub fn admit(&self) -> Result<(), Overloaded> {
        let now = Instant::now();
        let settings = &self.shared.settings;
        let (load, mean_wait) = {
            let meter = lock(&self.shared.load);
            (meter.load(settings.workers, now), meter.mean_wait(now))
        };
        let oldest_wait = {
            let state = lock(&self.shared.state);
            state
                .streams
                .values()
                .filter_map(|s| s.finals.front())
                .map(|job| now.saturating_duration_since(job.queued_at))
                .max()
                .unwrap_or_default()
        };
        if load > settings.max_load
            || mean_wait > settings.max_queue_wait
            || oldest_wait > settings.max_queue_wait * 4
        {
            return Err(Overloaded {
                workers: settings.workers,
                load_percent: load * 100.0,
                mean_wait_ms: mean_wait.as_millis() as u64,
                queue_wait_ms: oldest_wait.as_millis() as u64,
                max_load_percent: settings.max_load * 100.0,
                max_queue_wait_ms: settings.max_queue_wait.as_millis() as u64,
            });
        }
        Ok(())
    }

    /// Registers a stream; its results come on the returned receiver. Dropping the ticket
    /// withdraws its queued jobs.
    pub fn open(&self) -> (StreamTicket, mpsc::UnboundedReceiver<JobResult>) {
        let (results, receiver) = mpsc::unbounded_channel();
        let mut state = lock(&self.shared.state);
        let id = state.next_stream;
        state.next_stream += 1;
        state.streams.insert(
            id,
            StreamJobs {
                finals: VecDeque::new(),
                interim: None,
                running: false,
                results,
            },
        );
        drop(state);
        let ticket = StreamTicket {
            id,
            scheduler: self.clone(),
        };
        (ticket, receiver)
    }

    /// Blocks until every worker is idle and nothing is queued, or `timeout` passes.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        loop {
            if state.idle_workers == self.shared.settings.workers
                && state.final_turns.is_empty()
                && state.interim_turns.is_empty()
            {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.shared.work.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A stream's registration with the [`Scheduler`]. See [`Scheduler::open`].
pub struct StreamTicket {
    id: u64,
    scheduler: Scheduler,
}

impl std::fmt::Debug for StreamTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTicket")
            .field("id", &self.id)
            .finish()
    }
}

impl StreamTicket {
    /// Queues a final job (always decoded, in order).
    pub fn submit_final(&self, job: u64, samples: Vec<f32>) {
        let shared = &self.scheduler.shared;
        let mut state = lock(&shared.state);
        let Some(stream) = state.streams.get_mut(&self.id) else {
            return;
        };
        let first = stream.finals.is_empty();
        stream.finals.push_back(Job {
            id: job,
            kind: JobKind::Final,
            samples,
            queued_at: Instant::now(),
        });
        // An interim of the same stream is now stale.
        stream.interim = None;
        let running = stream.running;
        state.interim_turns.retain(|id| *id != self.id);
        if first && !running {
            state.final_turns.push_back(self.id);
        }
        drop(state);
        shared.work.notify_one();
    }

    /// Takes back a final job not yet on a worker (a speculative final whose pause turned out
    /// to be inside the utterance); one already decoding is left to finish.
    pub fn withdraw(&self, job: u64) {
        let mut state = lock(&self.scheduler.shared.state);
        let Some(stream) = state.streams.get_mut(&self.id) else {
            return;
        };
        stream.finals.retain(|queued| queued.id != job);
        if stream.finals.is_empty() {
            state.final_turns.retain(|id| *id != self.id);
        }
        drop(state);
        // `wait_idle` may be waiting for exactly this queue to empty.
        self.scheduler.shared.work.notify_all();
    }

    /// Offers an interim job: accepted (true) only if a worker is idle, nothing is waiting, and
    /// this stream has no job queued or running; refused (false) otherwise.
    pub fn try_submit_interim(&self, job: u64, samples: Vec<f32>) -> bool {
        let shared = &self.scheduler.shared;
        let mut state = lock(&shared.state);
        let waiting = state.final_turns.len() + state.interim_turns.len();
        if state.idle_workers <= waiting {
            return false;
        }
        let Some(stream) = state.streams.get_mut(&self.id) else {
            return false;
        };
        if stream.running || !stream.finals.is_empty() || stream.interim.is_some() {
            return false;
        }
        stream.interim = Some(Job {
            id: job,
            kind: JobKind::Interim,
            samples,
            queued_at: Instant::now(),
        });
        state.interim_turns.push_back(self.id);
        drop(state);
        shared.work.notify_one();
        true
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut state = lock(&self.scheduler.shared.state);
        state.streams.remove(&self.id);
        state.final_turns.retain(|id| *id != self.id);
        state.interim_turns.retain(|id| *id != self.id);
    }
}

/// The next job for a worker: finals first, streams in turn. Marks its stream running.
fn next_job(state: &mut State) -> Option<(u64, Job, mpsc::UnboundedSender<JobResult>)> {
    while let Some(id) = state.final_turns.pop_front() {
        if let Some(stream) = state.streams.get_mut(&id) {
            if let Some(job) = stream.finals.pop_front() {
                stream.running = true;
                return Some((id, job, stream.results.clone()));
            }
        }
    }
    while let Some(id) = state.interim_turns.pop_front() {
        if let Some(stream) = state.streams.get_mut(&id) {
            if let Some(job) = stream.interim.take() {
                stream.running = true;
                return Some((id, job, stream.results.clone()));
            }
        }
    }
    None
}

/// A job is done: its stream may take its turn again.
fn job_done(state: &mut State, id: u64) {
    if let Some(stream) = state.streams.get_mut(&id) {
        stream.running = false;
        if !stream.finals.is_empty() {
            state.final_turns.push_back(id);
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

/// A worker thread: loads its model, then decodes jobs until the scheduler is gone.
fn worker(
    index: usize,
    shared: Arc<Shared>,
    alive: Weak<Alive>,
    loader: DecoderLoader,
    loaded: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let load = || match catch_unwind(AssertUnwindSafe(|| loader())) {
        Ok(result) => result,
        Err(_) => Err("the model panicked while loading".to_string()),
    };
    let mut decoder = match load() {
        Ok(decoder) => decoder,
        Err(e) => {
            let _ = loaded.send(Err(e));
            return;
        }
    };
    lock(&shared.state).idle_workers += 1;
    let _ = loaded.send(Ok(()));
    drop(loaded);
    loop {
        let (stream, job, results) = {
            let mut state = lock(&shared.state);
            loop {
                if alive.strong_count() == 0 {
                    state.idle_workers -= 1;
                    return;
                }
                if let Some(next) = next_job(&mut state) {
                    state.idle_workers -= 1;
                    break next;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| decoder.decode(&job.samples)));
        let ended = Instant::now();
        if job.kind == JobKind::Final {
            let waited = started.saturating_duration_since(job.queued_at);
            lock(&shared.load).record(waited, started, ended);
        }
        let decoded = match outcome {
            Ok(decoded) => decoded,
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                error!(worker = index, panic = %what, "local inference crashed: reloading the model");
                match load() {
                    Ok(fresh) => decoder = fresh,
                    Err(e) => {
                        error!(worker = index, error = %e, "the model could not be reloaded: worker stops");
                        let _ = results.send(JobResult {
                            job: job.id,
                            kind: job.kind,
                            decoded: Err(format!("the local model crashed: {what}")),
                        });
                        let mut state = lock(&shared.state);
                        job_done(&mut state, stream);
                        return;
                    }
                }
                Err(format!("the local model crashed: {what}"))
            }
        };
        let _ = results.send(JobResult {
            job: job.id,
            kind: job.kind,
            decoded,
        });
        let mut state = lock(&shared.state);
        job_done(&mut state, stream);
        state.idle_workers += 1;
        drop(state);
        // Another worker may be waiting for this stream's next final, and `wait_idle` for this.
        shared.work.notify_all();
    }
}

#[cfg(test)]
mod tests;
