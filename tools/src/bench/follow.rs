//! One bench session that follows its server (`voxgate bench rolling`): it streams
//! emulator-encoded speech at real time through a balancer and, whenever the server tells it to
//! move (`reconnect`, a drain by hand-off) or the connection is lost (an instance killed), resumes
//! the session through the same URL as `docs/protocol.md` ("Resume") says — the newest token, the
//! audio after the last final sent again — and carries on. At the end every final is checked
//! against the script: each utterance exactly once, in order.
//!
//! What it measures: the *resume gap* of each interruption (from the `reconnect` or the loss to
//! the next final), and each final's latency from the first send of the frame that decides it,
//! kept apart for the first final after an interruption (it waits for the audio re-sent since the
//! last final to be recognised again: the move's cost) and the others.
//!
//! It also measures its own longest send stall on one connection: a bench starved of CPU may send
//! nothing for seconds, and a client silent for the gateway's `[audio] gap_close_ms` has paused —
//! the gateway closes the stream where the audio stopped, a documented split of the utterance
//! (docs/reliability.md). Such a failure still fails the session, and says so
//! ([`CLIENT_STALL_NOTE`]), so it is not mistaken for one of the gateway's.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::settings::AudioSettings;

use super::resume::{open, send_frames, Connection, Progress, BYTES_PER_MS, FORMAT};
use super::script::{Plan, Script};

/// Longest wait for any one server message before the session is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connection attempts of one resume; the pause doubles from [`FIRST_PAUSE`] up to
/// [`LONGEST_PAUSE`] (none before the first attempt after a `reconnect`).
const RESUME_ATTEMPTS: u32 = 8;
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(3);
/// After a failed send, how long the reader may take to hand over what the server said last (a
/// `reconnect` just before the Close).
const READER_GRACE: Duration = Duration::from_secs(2);
/// Interruptions one session may go through before it is given up (a resume refused again and
/// again would otherwise loop).
const MAX_INTERRUPTIONS: u32 = 20;
/// What a failure of a session that itself stalled longer than the gateway's audio gap says.
pub(super) const CLIENT_STALL_NOTE: &str = "the client itself sent nothing for";

/// Why a connection of the session ended before its `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interruption {
    /// The server said `reconnect`.
    Moved,
    /// The connection dropped, or the server said `shutting_down`.
    Lost,
}

/// What a server message means for the session.
enum Step {
    Go,
    Closed,
    Interrupted(Interruption),
}

/// What one session measured.
#[derive(Debug, Default)]
pub(super) struct Followed {
    /// `reconnect`s followed.
    pub(super) moves: u32,
    /// Connections lost and resumed.
    pub(super) drops: u32,
    /// Interruption → next final, µs.
    pub(super) gaps_us: Vec<u32>,
    /// Final latency of the finals that are not the first after an interruption, µs.
    pub(super) calm_us: Vec<u32>,
    /// Final latency of the first final after each interruption, µs.
    pub(super) moved_us: Vec<u32>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The session's state across its connections.
struct Follower<'a> {
    url: &'a str,
    script: &'a Script,
    plan: &'a Plan,
    t0: Instant,
    /// Session frames sent (the next one to send).
    sent: u64,
    stopped: bool,
    progress: Progress,
    /// The first send of each expected final's deciding frame.
    decision_sent: Vec<Option<Instant>>,
    /// The interruption not yet followed by a final (for the gap).
    open_gap: Option<Instant>,
    /// The last send on the current connection (`None` on a new one: a resume starts a new
    /// upstream stream, its wait is no pause of the old one).
    last_send: Option<Instant>,
    /// The longest time the session sent nothing on one connection while it had audio due.
    longest_stall: Duration,
    outcome: Followed,
}

impl Follower<'_> {
    /// The session frame due now (real time from the session's start).
    fn due(&self) -> u64 {
        (self.t0.elapsed().as_millis() as u64 / FORMAT.frame_ms + 1).min(self.plan.frame_count)
    }

    /// Sends frames up to the one due now (re-sending from `from`, `skip` bytes into it); `stop`
    /// after the last.
    async fn send_until_due(
        &mut self,
        conn: &mut Connection,
        from: u64,
        skip: usize,
    ) -> Result<(), String> {
        let due = self.due().max(self.sent);
        let now = Instant::now();
        if due > from {
            if let Some(last) = self.last_send {
                self.longest_stall = self.longest_stall.max(now - last);
            }
            self.last_send = Some(now);
        }
        for (k, expected) in self.plan.finals.iter().enumerate() {
            if (from..due).contains(&expected.decision_frame) && self.decision_sent[k].is_none() {
                self.decision_sent[k] = Some(now);
            }
        }
        send_frames(conn, self.script, self.plan, (from, due), skip).await?;
        self.sent = due;
        if self.sent == self.plan.frame_count {
            conn.sink
                .send(Message::Text(json!({"type":"stop"}).to_string().into()))
                .await
                .map_err(|e| format!("send stop: {e}"))?;
            self.stopped = true;
        }
        Ok(())
    }

    /// A final arrived: the gap it closes, its latency.
    fn on_final(&mut self, index: usize) {
        let now = Instant::now();
        let gap = self.open_gap.take();
        if let Some(at) = gap {
            self.outcome.gaps_us.push(micros(now - at));
        }
        if let Some(Some(sent)) = self.decision_sent.get(index) {
            let latency = micros(now - *sent);
            match gap {
                Some(_) => self.outcome.moved_us.push(latency),
                None => self.outcome.calm_us.push(latency),
            }
        }
    }

    /// A server message.
    fn on_message(&mut self, message: &Value) -> Result<Step, String> {
        Ok(match message["type"].as_str() {
            Some("reconnect") => {
                self.progress.take(message)?;
                Step::Interrupted(Interruption::Moved)
            }
            // A draining instance reached before the balancer took it out.
            Some("error") if message["code"] == "shutting_down" => {
                Step::Interrupted(Interruption::Lost)
            }
            _ => {
                let before = self.progress.finals.len();
                self.progress.take(message)?;
                if self.progress.finals.len() > before {
                    self.on_final(before);
                }
                if self.progress.closed {
                    Step::Closed
                } else {
                    Step::Go
                }
            }
        })
    }

    /// A send failed: what the server said before the connection went (a `reconnect` whose
    /// Close the send raced), else a lost connection.
    async fn after_failed_send(&mut self, conn: &mut Connection) -> Result<Step, String> {
        while let Ok(Some(message)) = tokio::time::timeout(READER_GRACE, conn.messages.recv()).await
        {
            match self.on_message(&message)? {
                Step::Go => {}
                step => return Ok(step),
            }
        }
        Ok(Step::Interrupted(Interruption::Lost))
    }

    /// Opens a connection that resumes the session and re-sends the audio after the last final.
    async fn resume(&mut self, kind: Interruption) -> Result<Connection, String> {
        let token = self
            .progress
            .token
            .clone()
            .ok_or("interrupted before any resume token")?;
        let from_ms = self.progress.final_ms;
        let start = json!({"type":"start","resume":{"token":token,"from_ms":from_ms}});
        let mut pause = match kind {
            Interruption::Moved => Duration::ZERO,
            Interruption::Lost => FIRST_PAUSE,
        };
        let mut last_error = String::new();
        self.last_send = None;
        for _ in 0..RESUME_ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).clamp(FIRST_PAUSE, LONGEST_PAUSE);
            let mut conn = match open(self.url, None, &start).await {
                Ok(conn) => conn,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let first = from_ms / FORMAT.frame_ms;
            let skip = ((from_ms - first * FORMAT.frame_ms) * BYTES_PER_MS) as usize;
            match self.send_until_due(&mut conn, first, skip).await {
                Ok(()) => return Ok(conn),
                Err(e) => last_error = e,
            }
        }
        Err(format!("could not resume: {last_error}"))
    }
}

/// One session of `plan` through `url`, followed across its servers until `closed`.
pub(super) async fn session(script: &Script, plan: &Plan, url: &str) -> Result<Followed, String> {
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
        "interim_results":false});
    let mut conn = open(url, None, &start).await?;
    let mut me = Follower {
        url,
        script,
        plan,
        t0: Instant::now(),
        sent: 0,
        stopped: false,
        progress: Progress::default(),
        decision_sent: vec![None; plan.finals.len()],
        open_gap: None,
        last_send: None,
        longest_stall: Duration::ZERO,
        outcome: Followed::default(),
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(FORMAT.frame_ms));
    loop {
        let step = tokio::select! {
            _ = ticker.tick(), if !me.stopped => {
                let from = me.sent;
                match me.send_until_due(&mut conn, from, 0).await {
                    Ok(()) => Step::Go,
                    Err(_) => me.after_failed_send(&mut conn).await?,
                }
            }
            message = tokio::time::timeout(READ_TIMEOUT, conn.messages.recv()) => match message {
                Err(_) => return Err(format!("nothing from the server for {READ_TIMEOUT:?}")),
                Ok(None) => Step::Interrupted(Interruption::Lost),
                Ok(Some(message)) => me.on_message(&message)?,
            },
        };
        if let Step::Closed = step {
            break;
        }
        if let Step::Interrupted(kind) = step {
            me.open_gap.get_or_insert(Instant::now());
            match kind {
                Interruption::Moved => me.outcome.moves += 1,
                Interruption::Lost => me.outcome.drops += 1,
            }
            if me.outcome.moves + me.outcome.drops > MAX_INTERRUPTIONS {
                return Err(format!("interrupted more than {MAX_INTERRUPTIONS} times"));
            }
            conn.reader.abort();
            drop(conn);
            conn = me.resume(kind).await?;
        }
    }
    let expected: Vec<&str> = plan
        .finals
        .iter()
        .map(|f| script.utterances[f.utterance].transcript.as_str())
        .collect();
    if me.progress.finals != expected {
        let gap_close = Duration::from_millis(AudioSettings::default().gap_close_ms);
        let stalled = if me.longest_stall >= gap_close {
            format!(
                " — {CLIENT_STALL_NOTE} {:.1} s on one connection, at least the gateway's \
                 [audio] gap_close_ms ({} ms): a pause, whose stream the gateway closes where \
                 the audio stopped",
                me.longest_stall.as_secs_f64(),
                gap_close.as_millis()
            )
        } else {
            String::new()
        };
        return Err(format!(
            "finals {:?}, expected {expected:?}{stalled}",
            me.progress.finals
        ));
    }
    Ok(me.outcome)
}
