//! Real-time pacing of every session's audio with a handful of timers.
//!
//! Sessions are dealt round-robin into groups; each group has one ticker task firing every frame
//! period, the groups' phases spread evenly over the period, and at each tick the group's ticker
//! writes the next frame of every one of its sessions. So 5 000 sessions cost 20 timer wake-ups per
//! 100 ms instead of 5 000, and their frames are spread over the period rather than sent in one
//! burst. A frame is written with a non-blocking write of shared, pre-encoded bytes (WebSocket) or
//! queued to the call (gRPC); nothing waits on one slow session.
//!
//! The ticker records the send instant of each frame the session's [`Plan`] marks (frames that
//! decide a final or end a word), just before writing it, and hands them back in a [`SendLog`]
//! when the session's plan is done (after sending `stop`, or half-closing the call), when the
//! session aborts, or when a send fails.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::script::{Plan, Script};
use super::ws::WsWriter;

/// A waiting (not yet streaming) WebSocket session sends `keepalive` this often, so that a long
/// ramp does not trip the server's idle timeout.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);

/// The audio every session sends, encoded once.
pub enum FrameSet {
    /// One complete WebSocket frame (binary, or a base64 JSON `audio` text frame) per loop frame.
    Ws {
        frames: Vec<Bytes>,
        keepalive: Bytes,
        stop: Bytes,
    },
    /// The raw audio, for gRPC requests (which need their own copy: prost's `bytes` are `Vec`).
    Raw(Arc<Script>),
}

/// Where a session's frames go.
pub enum Sink {
    Ws(Arc<WsWriter>),
    /// The call's audio queue (each frame becomes a request of the call's API version); dropped
    /// (half-closing the call) after the last frame.
    Grpc(Option<mpsc::Sender<Vec<u8>>>),
}

/// What the ticker reports when it is done with a session.
#[derive(Debug, Default)]
pub struct SendLog {
    /// Send instants (µs since the run's epoch) of the plan's marks, in order, as far as sent.
    pub marks_us: Vec<u64>,
    /// Frames written (or queued to the call).
    pub frames_sent: u64,
    /// The plan ran to its end and `stop` (or the half-close) was sent.
    pub completed: bool,
    /// Why sending stopped early, if it failed.
    pub error: Option<String>,
}

/// The session side of a registered entry.
pub struct EntryHandle {
    /// Set by the session to have the ticker drop it (the session failed or ended).
    pub abort: Arc<AtomicBool>,
    pub done: oneshot::Receiver<SendLog>,
}

/// One session in a group.
pub struct Entry {
    /// Where the frames go.
    sink: Sink,
    /// Which frames, and which of them to time.
    plan: Arc<Plan>,
    /// Waits for the run's "go" before streaming (keeping alive meanwhile).
    waiting: bool,
    /// The session frame sent at the next tick.
    next_frame: u64,
    /// What is reported when the entry is done.
    log: SendLog,
    /// Set by the session to end the entry.
    abort: Arc<AtomicBool>,
    /// Takes the log to the session (once).
    done: Option<oneshot::Sender<SendLog>>,
}

impl Entry {
    /// An entry for `plan`; `waiting` entries start at the run's go.
    pub fn new(sink: Sink, plan: Arc<Plan>, waiting: bool) -> (Entry, EntryHandle) {
        let abort = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = oneshot::channel();
        let entry = Entry {
            sink,
            log: SendLog {
                marks_us: Vec::with_capacity(plan.marks.len()),
                ..SendLog::default()
            },
            plan,
            waiting,
            next_frame: 0,
            abort: abort.clone(),
            done: Some(done_tx),
        };
        (entry, EntryHandle { abort, done })
    }

    /// One tick; `false` when the entry is done (and has reported).
    fn tick(&mut self, pacer: &Pacer, go: bool, keepalive_due: bool) -> bool {
        if self.abort.load(Ordering::Relaxed) {
            self.log.error.get_or_insert_with(|| "aborted".to_string());
            return self.report();
        }
        if self.waiting {
            if !go {
                if keepalive_due {
                    if let (Sink::Ws(writer), FrameSet::Ws { keepalive, .. }) =
                        (&self.sink, &pacer.frames)
                    {
                        if let Err(e) = writer.send(keepalive) {
                            self.log.error = Some(e);
                            return self.report();
                        }
                    }
                }
                return true;
            }
            self.waiting = false;
        }
        let k = self.next_frame;
        let marked = self.plan.marks.get(self.log.marks_us.len()) == Some(&k);
        let at = if marked { pacer.now_us() } else { 0 };
        if let Err(e) = self.send_frame(pacer, self.plan.first_frame + k) {
            self.log.error = Some(e);
            return self.report();
        }
        if marked {
            self.log.marks_us.push(at);
        }
        self.next_frame += 1;
        self.log.frames_sent += 1;
        if self.next_frame >= self.plan.frame_count {
            if let Err(e) = self.end(pacer) {
                self.log.error = Some(e);
            } else {
                self.log.completed = true;
            }
            return self.report();
        }
        true
    }

    fn send_frame(&mut self, pacer: &Pacer, loop_frame: u64) -> Result<(), String> {
        match (&mut self.sink, &pacer.frames) {
            (Sink::Ws(writer), FrameSet::Ws { frames, .. }) => {
                let frame = &frames[(loop_frame % frames.len() as u64) as usize];
                writer.send(frame)
            }
            (Sink::Grpc(Some(requests)), FrameSet::Raw(script)) => requests
                .try_send(script.frame_audio(loop_frame).to_vec())
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => {
                        "the emulator is not reading (request queue full)".to_string()
                    }
                    mpsc::error::TrySendError::Closed(_) => "the call ended early".to_string(),
                }),
            _ => Err("internal: sink and frames of different kinds".to_string()),
        }
    }

    /// After the last frame: `stop`, or the half-close of the call.
    fn end(&mut self, pacer: &Pacer) -> Result<(), String> {
        match (&mut self.sink, &pacer.frames) {
            (Sink::Ws(writer), FrameSet::Ws { stop, .. }) => writer.send(stop),
            (Sink::Grpc(requests), _) => {
                *requests = None;
                Ok(())
            }
            _ => Err("internal: sink and frames of different kinds".to_string()),
        }
    }

    fn report(&mut self) -> bool {
        if let Sink::Grpc(requests) = &mut self.sink {
            *requests = None;
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.log));
        }
        false
    }
}

/// The tickers and what they share.
pub struct Pacer {
    /// The frames every session sends.
    frames: FrameSet,
    /// New entries per group, taken by the group's ticker at its next tick.
    groups: Vec<Mutex<Vec<Entry>>>,
    next_group: AtomicUsize,
    /// Waiting entries start streaming once this is set.
    go: AtomicBool,
    /// Tickers end (failing their entries) once this is set.
    stopped: AtomicBool,
    /// The run's time origin.
    epoch: Instant,
    /// The frame period: every session's ticker fires this often.
    period: Duration,
    /// How late ticks fired, µs (the bench's own health: a starved bench paces late).
    lag_us: Mutex<Vec<u32>>,
}

impl Pacer {
    pub fn new(frames: FrameSet, groups: usize, period: Duration, epoch: Instant) -> Arc<Pacer> {
        Arc::new(Pacer {
            frames,
            groups: (0..groups.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            next_group: AtomicUsize::new(0),
            go: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            epoch,
            period,
            lag_us: Mutex::new(Vec::new()),
        })
    }

    /// Microseconds since the run's epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// `instant` as microseconds since the run's epoch (0 before it).
    pub fn us_at(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Starts one ticker per group (in the current runtime).
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let n = self.groups.len() as u32;
        let first = tokio::time::Instant::now() + self.period;
        (0..self.groups.len())
            .map(|g| {
                let offset = self.period * g as u32 / n;
                tokio::spawn(run_group(self.clone(), g, first + offset))
            })
            .collect()
    }

    /// Hands an entry to a group (round-robin).
    pub fn register(&self, entry: Entry) {
        let g = self.next_group.fetch_add(1, Ordering::Relaxed) % self.groups.len();
        match self.groups[g].lock() {
            Ok(mut pending) => pending.push(entry),
            Err(poisoned) => poisoned.into_inner().push(entry),
        }
    }

    /// Waiting entries start streaming at their group's next tick.
    pub fn go(&self) {
        self.go.store(true, Ordering::Relaxed);
    }

    /// Ends the tickers; entries still registered report an error.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Tick lateness samples so far.
    pub fn take_lag(&self) -> Vec<u32> {
        match self.lag_us.lock() {
            Ok(mut lag) => std::mem::take(&mut *lag),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

async fn run_group(pacer: Arc<Pacer>, group: usize, first: tokio::time::Instant) {
    let mut interval = tokio::time::interval_at(first, pacer.period);
    // A late tick is followed by the missed ones at once: audio stays on the wall clock.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let keepalive_ticks = (KEEPALIVE_EVERY.as_millis() / pacer.period.as_millis().max(1)).max(1);
    let mut active: Vec<Entry> = Vec::new();
    let mut lag = Vec::new();
    let mut ticks: u128 = 0;
    loop {
        let scheduled = interval.tick().await;
        if pacer.stopped.load(Ordering::Relaxed) {
            for mut entry in active.drain(..) {
                entry
                    .log
                    .error
                    .get_or_insert_with(|| "the bench stopped".to_string());
                entry.report();
            }
            if let Ok(mut pending) = pacer.groups[group].lock() {
                for mut entry in pending.drain(..) {
                    entry.log.error = Some("the bench stopped".to_string());
                    entry.report();
                }
            }
            break;
        }
        let late = tokio::time::Instant::now().saturating_duration_since(scheduled);
        lag.push(u32::try_from(late.as_micros()).unwrap_or(u32::MAX));
        if lag.len() >= 256 {
            if let Ok(mut all) = pacer.lag_us.lock() {
                all.append(&mut lag);
            }
        }
        match pacer.groups[group].lock() {
            Ok(mut pending) => active.append(&mut pending),
            Err(poisoned) => active.append(&mut poisoned.into_inner()),
        }
        let go = pacer.go.load(Ordering::Relaxed);
        ticks += 1;
        let keepalive_due = ticks.is_multiple_of(keepalive_ticks);
        let mut i = 0;
        while i < active.len() {
            if active[i].tick(&pacer, go, keepalive_due) {
                i += 1;
            } else {
                active.swap_remove(i);
            }
        }
    }
    if let Ok(mut all) = pacer.lag_us.lock() {
        all.append(&mut lag);
    }
}
