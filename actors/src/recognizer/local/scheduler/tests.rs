use std::sync::mpsc as std_mpsc;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// A decoder that answers "n<samples>", panics on a segment of 13 samples, fails on 7, and
/// (when gated) waits for a permit before each decode.
struct Counting {
    gate: Option<Arc<Mutex<std_mpsc::Receiver<()>>>>,
    /// Told each segment length as a decode starts (before the gate).
    entered: Option<std_mpsc::Sender<usize>>,
    /// Every segment length decoded, by any worker, in order.
    log: Arc<Mutex<Vec<usize>>>,
}

impl SegmentDecoder for Counting {
    fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String> {
        if let Some(entered) = &self.entered {
            let _ = entered.send(samples.len());
        }
        if let Some(gate) = &self.gate {
            let _ = lock(gate).recv();
        }
        lock(&self.log).push(samples.len());
        match samples.len() {
            13 => panic!("scripted panic"),
            7 => Err("scripted failure".into()),
            n => Ok(DecodedSegment::text_only(format!("n{n}"))),
        }
    }
}

fn settings(workers: usize) -> SchedulerSettings {
    SchedulerSettings {
        workers,
        max_load: 0.9,
        max_queue_wait: Duration::from_millis(200),
    }
}

fn counting(workers: usize) -> Scheduler {
    let loader: DecoderLoader = Arc::new(|| {
        Ok(Box::new(Counting {
            gate: None,
            entered: None,
            log: Arc::default(),
        }) as Box<dyn SegmentDecoder>)
    });
    Scheduler::start(settings(workers), loader).unwrap_or_else(|e| panic!("{e}"))
}

/// A gated scheduler: each decode says it started, then waits for a permit.
struct Gated {
    scheduler: Scheduler,
    permits: std_mpsc::Sender<()>,
    entered: std_mpsc::Receiver<usize>,
    /// What the workers decoded, in order.
    log: Arc<Mutex<Vec<usize>>>,
}

impl Gated {
    fn allow(&self, n: usize) {
        for _ in 0..n {
            self.permits.send(()).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Waits until a worker has started decoding a segment of `len` samples.
    fn started(&self, len: usize) {
        assert_eq!(self.entered.recv_timeout(WAIT).ok(), Some(len));
    }
}

fn gated(workers: usize) -> Gated {
    let (permits, gate) = std_mpsc::channel();
    let (entered_tx, entered) = std_mpsc::channel();
    let gate = Arc::new(Mutex::new(gate));
    let log: Arc<Mutex<Vec<usize>>> = Arc::default();
    let shared_log = log.clone();
    let loader: DecoderLoader = Arc::new(move || {
        Ok(Box::new(Counting {
            gate: Some(gate.clone()),
            entered: Some(entered_tx.clone()),
            log: shared_log.clone(),
        }) as Box<dyn SegmentDecoder>)
    });
    let scheduler = Scheduler::start(settings(workers), loader).unwrap_or_else(|e| panic!("{e}"));
    Gated {
        scheduler,
        permits,
        entered,
        log,
    }
}

fn recv(results: &mut mpsc::UnboundedReceiver<JobResult>) -> JobResult {
    let deadline = Instant::now() + WAIT;
    loop {
        match results.try_recv() {
            Ok(r) => return r,
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("no result: {e}"),
        }
    }
}

/// Finals come back in order, each with its text.
#[test]
fn finals_are_decoded_in_order() {
    let scheduler = counting(2);
    let (ticket, mut results) = scheduler.open();
    for (job, n) in [(0, 100), (1, 200), (2, 300)] {
        ticket.submit_final(job, vec![0.0; n]);
    }
    let got: Vec<(u64, Result<String, String>)> = (0..3)
        .map(|_| recv(&mut results))
        .map(|r| (r.job, r.decoded.map(|d| d.text)))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, Ok("n100".into())),
            (1, Ok("n200".into())),
            (2, Ok("n300".into()))
        ]
    );
    assert!(scheduler.wait_idle(WAIT));
}

/// Interims are refused when no worker is free, or when the stream has work queued; accepted
/// otherwise.
#[test]
fn interims_are_skipped_when_busy() {
    let g = gated(1);
    let (a, mut a_results) = g.scheduler.open();
    let (b, mut b_results) = g.scheduler.open();
    assert!(
        a.try_submit_interim(0, vec![0.0; 10]),
        "an idle worker takes it"
    );
    g.started(10);
    // The only worker is decoding a's interim: nothing else is accepted as an interim.
    assert!(!b.try_submit_interim(0, vec![0.0; 10]));
    b.submit_final(1, vec![0.0; 20]);
    assert!(
        !b.try_submit_interim(2, vec![0.0; 10]),
        "b has a final waiting"
    );
    g.allow(2);
    assert_eq!(
        recv(&mut a_results).decoded.map(|d| d.text),
        Ok("n10".into())
    );
    let r = recv(&mut b_results);
    assert_eq!((r.job, r.kind), (1, JobKind::Final));
    assert!(g.scheduler.wait_idle(WAIT));
    assert!(b.try_submit_interim(3, vec![0.0; 30]), "idle again");
    g.allow(1);
    assert_eq!(recv(&mut b_results).job, 3);
}

/// With one worker and several streams, waiting finals are served in turn (round-robin), and
/// an interim waits behind finals.
#[test]
fn finals_first_and_streams_in_turn() {
    let g = gated(1);
    let (a, _a_results) = g.scheduler.open();
    let (b, _b_results) = g.scheduler.open();
    let (c, _c_results) = g.scheduler.open();
    // The worker is held by c's final while the queue fills.
    c.submit_final(0, vec![0.0; 1]);
    g.started(1);
    a.submit_final(0, vec![0.0; 100]);
    a.submit_final(1, vec![0.0; 101]);
    b.submit_final(0, vec![0.0; 200]);
    g.allow(4);
    assert!(g.scheduler.wait_idle(WAIT));
    assert_eq!(*lock(&g.log), vec![1, 100, 200, 101]);
    // An interim queued (by the scheduler's own rules it cannot be, with no idle worker; here
    // straight into the state) is taken only after every final.
    {
        let mut state = lock(&g.scheduler.shared.state);
        let now = Instant::now();
        let job = |id, kind, len| Job {
            id,
            kind,
            samples: vec![0.0; len],
            queued_at: now,
        };
        if let Some(stream) = state.streams.get_mut(&c.id) {
            stream.interim = Some(job(5, JobKind::Interim, 7_000));
        }
        if let Some(stream) = state.streams.get_mut(&a.id) {
            stream.finals.push_back(job(6, JobKind::Final, 300));
        }
        state.interim_turns.push_back(c.id);
        state.final_turns.push_back(a.id);
        let first = next_job(&mut state).map(|(_, job, _)| job.kind);
        let second = next_job(&mut state).map(|(_, job, _)| job.kind);
        assert_eq!(
            (first, second),
            (Some(JobKind::Final), Some(JobKind::Interim))
        );
    }
}

/// A decode that fails or panics fails that job only; the worker reloads and serves on.
#[test]
fn failures_and_panics_fail_one_job() {
    let scheduler = counting(1);
    let (ticket, mut results) = scheduler.open();
    ticket.submit_final(0, vec![0.0; 7]);
    ticket.submit_final(1, vec![0.0; 13]);
    ticket.submit_final(2, vec![0.0; 5]);
    assert_eq!(
        recv(&mut results).decoded.map(|d| d.text),
        Err("scripted failure".into())
    );
    let crashed = recv(&mut results).decoded.map(|d| d.text);
    assert!(
        crashed
            .as_ref()
            .err()
            .is_some_and(|e| e.contains("scripted panic")),
        "{crashed:?}"
    );
    assert_eq!(recv(&mut results).decoded.map(|d| d.text), Ok("n5".into()));
}

/// Dropping a ticket withdraws its queued jobs: nothing more is decoded for it.
#[test]
fn dropped_tickets_withdraw_their_jobs() {
    let g = gated(1);
    let (a, mut a_results) = g.scheduler.open();
    let (b, mut b_results) = g.scheduler.open();
    a.submit_final(0, vec![0.0; 1]);
    g.started(1);
    b.submit_final(0, vec![0.0; 2]);
    b.submit_final(1, vec![0.0; 3]);
    drop(b);
    g.allow(1);
    assert_eq!(
        recv(&mut a_results).decoded.map(|d| d.text),
        Ok("n1".into())
    );
    assert!(g.scheduler.wait_idle(WAIT), "b's finals were withdrawn");
    assert_eq!(*lock(&g.log), vec![1]);
    assert!(b_results.try_recv().is_err());
}

/// Admission by load: idle workers admit; a final stuck in the queue for four times the limit
/// refuses, with a message that says why; once finals have waited longer than the limit on
/// average, that refuses too, until the window forgets them.
#[test]
fn admission_follows_the_queue() {
    let g = gated(1);
    assert_eq!(g.scheduler.admit(), Ok(()));
    let (a, mut results) = g.scheduler.open();
    a.submit_final(0, vec![0.0; 1]);
    a.submit_final(1, vec![0.0; 2]);
    g.started(1);
    // Waiting is what is measured here: let the queued final age past four times the limit.
    std::thread::sleep(Duration::from_millis(850));
    let refused = g.scheduler.admit();
    let message = refused
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        message.contains("busy") && message.contains("oldest now"),
        "{message}"
    );
    g.allow(2);
    recv(&mut results);
    recv(&mut results);
    assert!(g.scheduler.wait_idle(WAIT));
    // Nothing queued now, but the finals of the window waited about 425 ms on average.
    let refused = g.scheduler.admit().err();
    assert!(
        refused
            .as_ref()
            .is_some_and(|o| o.queue_wait_ms == 0 && o.mean_wait_ms >= 400),
        "{refused:?}"
    );
}

/// The load meter: busy time over the window, per worker.
#[test]
fn load_meter_measures_share_of_time() {
    let origin = Instant::now();
    let mut meter = LoadMeter {
        origin,
        buckets: VecDeque::new(),
    };
    let at = |ms: u64| origin + Duration::from_millis(ms);
    // 2.5 s of decoding in the last 5 s, over 2 workers: 25 %; waits of 0, 10, … 90 ms.
    for i in 0..10 {
        meter.record(
            Duration::from_millis(i * 10),
            at(i * 500),
            at(i * 500 + 250),
        );
    }
    let load = meter.load(2, at(5_000));
    assert!((load - 0.25).abs() < 0.03, "{load}");
    assert_eq!(meter.mean_wait(at(5_000)), Duration::from_millis(45));
    // Ten seconds later, nothing in the window.
    assert_eq!(meter.load(2, at(15_000)), 0.0);
    assert_eq!(meter.mean_wait(at(15_000)), Duration::ZERO);
}

/// A loader that fails is a start-up error.
#[test]
fn loading_errors_are_returned() {
    let loader: DecoderLoader = Arc::new(|| Err("no model here".to_string()));
    assert_eq!(
        Scheduler::start(settings(2), loader).err(),
        Some("no model here".to_string())
    );
}
