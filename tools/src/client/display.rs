//! What `voxgate stream` shows while it streams. Final results go to stdout, one line each
//! (`[  1.20s –   2.30s] text`); in a terminal, a live line below them shows the interim text,
//! rewritten in place, and the progress through a long file. Not in a terminal (a pipe, a file),
//! only the finals are written: plain lines a script can read. `--json` writes every server
//! message as one JSON line instead. Warnings and the session summary go to stderr.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// Files shorter than this get no progress line (it would flash by).
const PROGRESS_FROM_MS: u64 = 10_000;

/// Where the live line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Stdout,
    Stderr,
}

pub struct Display {
    json: bool,
    /// Finals on stdout (not when stdout carries subtitles, `--srt -` / `--vtt -`).
    finals: bool,
    /// The terminal the live line is drawn on, if any.
    live: Option<Live>,
    /// Whether the live line is on screen now (and must be cleared before other output).
    drawn: bool,
    interim: String,
    progress: String,
}

impl Display {
    /// `finals`: whether final lines go to stdout.
    pub fn new(json: bool, finals: bool) -> Display {
        let live = if json {
            None
        } else if finals && std::io::stdout().is_terminal() {
            Some(Live::Stdout)
        } else if std::io::stderr().is_terminal() {
            Some(Live::Stderr)
        } else {
            None
        };
        Display {
            json,
            finals,
            live,
            drawn: false,
            interim: String::new(),
            progress: String::new(),
        }
    }

    /// Shows one server message (`text` as received, `message` parsed).
    pub fn message(&mut self, text: &str, message: &Value) {
        if self.json {
            println!("{}", text.trim());
            return;
        }
        match message["type"].as_str().unwrap_or("") {
            "transcript" if message["is_final"] == true => {
                self.interim.clear();
                self.clear();
                if self.finals {
                    println!(
                        "[{:>8.2}s – {:>8.2}s] {}",
                        message["start_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                        message["end_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                        message["transcript"].as_str().unwrap_or("")
                    );
                }
                self.draw();
            }
            "transcript" => {
                self.interim = message["transcript"].as_str().unwrap_or("").to_string();
                self.draw();
            }
            "warning" => {
                self.clear();
                eprintln!(
                    "warning: {}: {}",
                    message["code"].as_str().unwrap_or("?"),
                    message["message"].as_str().unwrap_or("")
                );
                self.draw();
            }
            "closed" => {
                self.clear();
                eprintln!(
                    "closed: {:.1} s of audio, {} results, {} restarts",
                    message["audio_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                    message["results"],
                    message["restarts"]
                );
            }
            _ => {}
        }
    }

    /// How far the audio is: `sent_ms` of `total_ms` (when known).
    pub fn progress(&mut self, sent_ms: u64, total_ms: Option<u64>) {
        self.progress = match total_ms {
            Some(total) if total >= PROGRESS_FROM_MS => format!(
                "{:.1}/{:.1} s {:>3}%",
                sent_ms as f64 / 1000.0,
                total as f64 / 1000.0,
                sent_ms * 100 / total.max(1)
            ),
            Some(_) => String::new(),
            None => format!("{:.1} s", sent_ms as f64 / 1000.0),
        };
        self.draw();
    }

    /// A line about the connection (a resume) on stderr, around the live line.
    pub fn notice(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
        self.draw();
    }

    /// Removes the live line (before exiting, or before an error message).
    pub fn finish(&mut self) {
        self.clear();
    }

    /// Draws the live line: progress, then the end of the interim text, dimmed, within the
    /// terminal's width (a wrapped line could not be rewritten in place).
    fn draw(&mut self) {
        let Some(live) = self.live else { return };
        let mut line = String::new();
        if !self.progress.is_empty() {
            line.push_str(&format!("[{}] ", self.progress));
        }
        let room = terminal_width(live).saturating_sub(line.chars().count() + 2);
        let interim: Vec<char> = self.interim.chars().collect();
        let tail: String = interim[interim.len().saturating_sub(room)..]
            .iter()
            .collect();
        let text = format!("\r\x1b[2K{line}\x1b[2m{tail}\x1b[0m");
        write_to(live, &text);
        self.drawn = !line.is_empty() || !tail.is_empty();
    }

    fn clear(&mut self) {
        if let (Some(live), true) = (self.live, self.drawn) {
            write_to(live, "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

fn write_to(live: Live, text: &str) {
    // A terminal that cannot be written to is not worth failing the stream for.
    let _ = match live {
        Live::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        Live::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes()).and_then(|()| err.flush())
        }
    };
}

/// The terminal's width in columns (80 when it cannot be told).
fn terminal_width(live: Live) -> usize {
    let fd = match live {
        Live::Stdout => libc::STDOUT_FILENO,
        Live::Stderr => libc::STDERR_FILENO,
    };
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed, which lives on this stack.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}
