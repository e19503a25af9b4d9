//! The Asterisk prompts: 8 kHz telephone speech of one professional voice, with transcripts.
//!
//! Audio: Debian `asterisk-core-sounds-en-wav` (`/usr/share/asterisk/sounds/en_US_f_Allison/KEY.wav`).
//! Texts: `core-sounds-en.txt` of Debian `asterisk-core-sounds-en`, unpacked by
//! `scripts/setup-offline-engine.sh --test-data` into `<engine_dir>/test-data/`. Each line is
//! `key: text` (split at the first colon; `;` starts a comment). Prompts that are only a bracketed
//! sound note (`[beep]`) are skipped; bracketed notes inside a text are dropped.
//!
//! Normalisation before scoring (the same for every hypothesis): lower case; `#` pound, `*` star,
//! `%` percent; numerals as cardinal words (`28.8` twenty eight point eight); `mr`/`mrs` spelled
//! out; words are runs of letters and digits (apostrophes and hyphens dropped, so "it's" is "its"
//! and "voice-mail" is "voice mail").

use std::path::{Path, PathBuf};

use super::librivox::read_pcm_wav;
use voxgate_actors::settings::LocalSettings;

/// Where the audio is.
pub const AUDIO_DIR: &str = "/usr/share/asterisk/sounds/en_US_f_Allison";

/// One prompt.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The key (`vm-intro`, `digits/5`).
    pub key: String,
    /// The reference, normalised.
    pub reference: Vec<String>,
    /// The sample rate of `samples` (8 kHz).
    pub rate: u32,
    /// Mono 16-bit samples.
    pub samples: Vec<i16>,
}

impl Prompt {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }

    /// The audio as LINEAR16 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }
}

/// The transcripts file.
pub fn texts_path() -> PathBuf {
    LocalSettings::default()
        .engine_dir()
        .join("test-data/core-sounds-en.txt")
}

/// Every prompt with audio and a spoken text, in key order.
pub fn prompts() -> Vec<Prompt> {
    let path = texts_path();
    let texts = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/setup-offline-engine.sh --test-data)",
            path.display()
        )
    });
    let mut prompts: Vec<Prompt> = texts
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(key, text)| {
            let text = drop_brackets(text);
            let reference = normalise(&text);
            let wav = Path::new(AUDIO_DIR).join(format!("{}.wav", key.trim()));
            if reference.is_empty() || !wav.is_file() {
                return None;
            }
            let (rate, samples) = read_pcm_wav(&wav);
            Some(Prompt {
                key: key.trim().to_string(),
                reference,
                rate,
                samples,
            })
        })
        .collect();
    assert!(
        prompts.len() > 500,
        "{} prompts with audio: install asterisk-core-sounds-en-wav",
        prompts.len()
    );
    prompts.sort_by(|a, b| a.key.cmp(&b.key));
    prompts
}

/// `text` without `[…]` notes.
pub fn drop_brackets(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// A number as cardinal words ("1234" → one thousand two hundred thirty four).
fn cardinal(n: u64, out: &mut Vec<String>) {
    if n >= 1_000_000 {
        cardinal(n / 1_000_000, out);
        out.push("million".into());
        if !n.is_multiple_of(1_000_000) {
            cardinal(n % 1_000_000, out);
        }
    } else if n >= 1_000 {
        cardinal(n / 1_000, out);
        out.push("thousand".into());
        if !n.is_multiple_of(1_000) {
            cardinal(n % 1_000, out);
        }
    } else if n >= 100 {
        out.push(ONES[(n / 100) as usize].into());
        out.push("hundred".into());
        if !n.is_multiple_of(100) {
            cardinal(n % 100, out);
        }
    } else if n >= 20 {
        out.push(TENS[(n / 10) as usize].into());
        if !n.is_multiple_of(10) {
            out.push(ONES[(n % 10) as usize].into());
        }
    } else {
        out.push(ONES[n as usize].into());
    }
}

/// Words for scoring (see the module doc).
pub fn normalise(text: &str) -> Vec<String> {
    let text = text
        .to_lowercase()
        .replace('#', " pound ")
        .replace('*', " star ")
        .replace('%', " percent ");
    let chars: Vec<char> = text.chars().collect();
    let mut spaced = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let digit_around = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(char::is_ascii_digit)
        };
        if c == '.' && digit_around(i.checked_sub(1)) && digit_around(Some(i + 1)) {
            spaced.push_str(" point ");
        } else if c.is_ascii_digit() {
            // Digits apart from letters ("3d" → "3 d").
            if i > 0 && chars[i - 1].is_alphabetic() {
                spaced.push(' ');
            }
            spaced.push(c);
            if chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) {
                spaced.push(' ');
            }
        } else if c == '\'' {
            continue;
        } else if c.is_alphanumeric() {
            spaced.push(c);
        } else {
            spaced.push(' ');
        }
    }
    let mut words = Vec::new();
    for word in spaced.split_whitespace() {
        match word {
            "mr" => words.push("mister".into()),
            "mrs" => words.push("missus".into()),
            w if w.chars().all(|c| c.is_ascii_digit()) => match w.parse::<u64>() {
                Ok(n) => cardinal(n, &mut words),
                Err(_) => words.push(w.into()),
            },
            w => words.push(w.into()),
        }
    }
    words
}
