//! The real speech the local engine is tested on: the LibriVox recordings and reference
//! transcripts of Debian's `pocketsphinx-testdata`, and word error rate.
//!
//! Normalisation before scoring (the same for every hypothesis): lower case; words are runs of
//! letters, digits and apostrophes; `mr` is written `mister` as in the references (the language
//! model spells the title `mr`, the transcripts `mister`). Nothing else is changed.

use std::path::Path;

/// Where `pocketsphinx-testdata` installs the recordings.
pub const LIBRIVOX_DIR: &str = "/usr/share/pocketsphinx/test/data/librivox";

/// One recording with its reference.
#[derive(Debug, Clone)]
pub struct Clip {
    /// The file id (`sense_and_sensibility_01_austen_64kb-0870`).
    pub id: String,
    /// The reference transcript, normalised.
    pub reference: Vec<String>,
    /// 16 kHz mono 16-bit samples.
    pub samples: Vec<i16>,
}

impl Clip {
    /// The audio as LINEAR16 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / 16_000.0
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (install the Debian package pocketsphinx-testdata)",
            path.display()
        )
    })
}

/// The samples of a 16 kHz mono 16-bit PCM WAV file (checked).
pub fn read_wav(path: &Path) -> Vec<i16> {
    let (rate, samples) = read_pcm_wav(path);
    assert_eq!(rate, 16_000, "{}: not 16 kHz", path.display());
    samples
}

/// The sample rate and samples of a mono 16-bit PCM WAV file (checked).
pub fn read_pcm_wav(path: &Path) -> (u32, Vec<i16>) {
    let bytes = read(path);
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{}: not a WAV file",
        path.display()
    );
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            let tag = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            format = ((tag, channels, bits) == (1, 1, 16)).then_some(rate);
        }
        if id == b"data" {
            let rate = format.unwrap_or_else(|| panic!("{}: not mono 16-bit PCM", path.display()));
            let samples = body
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect();
            return (rate, samples);
        }
        at += 8 + len + (len & 1);
    }
    panic!("{}: no data chunk", path.display());
}

/// Every clip listed in `fileids`, with its reference from `transcription`.
pub fn clips() -> Vec<Clip> {
    let dir = Path::new(LIBRIVOX_DIR);
    let ids = String::from_utf8_lossy(&read(&dir.join("fileids"))).into_owned();
    let transcription = String::from_utf8_lossy(&read(&dir.join("transcription"))).into_owned();
    let clips: Vec<Clip> = ids
        .lines()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            let line = transcription
                .lines()
                .find(|l| l.trim_end().ends_with(&format!("({id})")))
                .unwrap_or_else(|| panic!("no reference for {id}"));
            let text = line
                .rsplit_once('(')
                .map_or(line, |(text, _)| text)
                .replace("<s>", " ")
                .replace("</s>", " ");
            Clip {
                id: id.to_string(),
                reference: normalise(&text),
                samples: read_wav(&dir.join(format!("{id}.wav"))),
            }
        })
        .collect();
    assert!(!clips.is_empty(), "no clips in {LIBRIVOX_DIR}/fileids");
    clips
}

/// Words for scoring (see the module doc).
pub fn normalise(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "mr" => "mister".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// Word-level edit distance: substitutions + deletions + insertions of the best alignment.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut current = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(r != h);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[hypothesis.len()]
}

/// Errors and reference words of a set of (reference, hypothesis) pairs, and their ratio.
pub fn word_error_rate(pairs: &[(&[String], &[String])]) -> (usize, usize, f64) {
    let errors: usize = pairs.iter().map(|(r, h)| word_errors(r, h)).sum();
    let words: usize = pairs.iter().map(|(r, _)| r.len()).sum();
    (errors, words, errors as f64 / words.max(1) as f64)
}
