//! What every benchmark session says, and what it must hear back.
//!
//! One loop of emulator-encoded speech (a minute by default) is built once per run: utterances of
//! 2–6 words from a fixed vocabulary, encoded with [`synth::encode_with_timeline`], padded with
//! silence to a whole number of frames, so that the loop can repeat seamlessly. The emulator's own
//! [`Decoder`] is run over it once to learn, for every utterance, the exact sample at which the
//! recogniser decides its final (`end_sample`, 300 ms into the following pause) and the word times
//! it will report; the transcripts are checked against the text, so a bench never runs with a
//! script it cannot verify.
//!
//! A session's [`Plan`] starts and ends at *safe boundaries*: frame boundaries in an utterance's
//! pause, after its final is decided and before the next utterance begins. A stream that starts
//! there hears every following utterance exactly, and a stream that stops there has already had
//! every final decided — so every session's expected finals are known exactly. Sessions start at
//! different utterances (spread over the loop) so that their finals do not all fall on the same
//! instant, while every frame of audio is still one shared buffer.

use bytes::Bytes;

use voxgate_emulator::synth::{self, Decoder, SynthEncoding};

/// Words the scripts are made of (short and long, so utterances vary in length).
const VOCABULARY: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "voxgate",
    "streams",
    "words",
    "live",
    "audio",
    "gateway",
    "actor",
    "session",
    "final",
    "result",
    "hello",
    "world",
    "speech",
    "to",
    "text",
    "every",
    "second",
    "counts",
    "small",
    "machine",
    "thousands",
    "of",
    "calls",
    "rust",
    "tokio",
    "socket",
    "frame",
    "buffer",
    "latency",
    "is",
    "low",
    "and",
    "steady",
    "we",
    "measure",
    "it",
    "twice",
    "one",
    "two",
    "three",
];
/// Fewest and most words in an utterance.
const MIN_WORDS: usize = 2;
const MAX_WORDS: usize = 6;

/// The audio format of a script (the emulator's synthetic code needs an uncompressed encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptFormat {
    /// Samples per second.
    pub sample_rate_hz: u32,
    /// LINEAR16 or MULAW.
    pub encoding: SynthEncoding,
    /// Length of one frame (one WebSocket message or one gRPC request), in ms.
    pub frame_ms: u64,
}

impl ScriptFormat {
    /// The client protocol's and Google's name of the encoding.
    pub fn encoding_name(&self) -> &'static str {
        match self.encoding {
            SynthEncoding::Linear16 => "LINEAR16",
            SynthEncoding::Mulaw => "MULAW",
            SynthEncoding::Alaw => "ALAW",
        }
    }
}

/// A word as the recogniser will report it, in samples from the start of the loop.
#[derive(Debug, Clone)]
pub struct ScriptWord {
    pub word: String,
    /// First loud sample of its first tone.
    pub start_sample: u64,
    /// One past the last loud sample of its last tone.
    pub end_sample: u64,
}

/// One utterance of the loop: one final result.
#[derive(Debug, Clone)]
pub struct Utterance {
    /// The final's transcript (words joined by single spaces).
    pub transcript: String,
    pub words: Vec<ScriptWord>,
    /// Samples the recogniser has consumed when it decides this final: the final is produced
    /// while it processes sample `decision_sample - 1`.
    pub decision_sample: u64,
    /// The first frame boundary (a frame index) after the decision, inside the following pause:
    /// a session may start or stop here.
    pub safe_frame: u64,
}

/// The loop of audio every session plays from, and what the recogniser makes of it.
#[derive(Debug)]
pub struct Script {
    pub format: ScriptFormat,
    /// Samples in one frame.
    pub frame_samples: u64,
    /// Bytes in one frame.
    pub frame_bytes: usize,
    /// The whole loop; `frames × frame_bytes` long.
    pub audio: Bytes,
    /// Frames in the loop.
    pub frames: u64,
    /// The loop's utterances in order.
    pub utterances: Vec<Utterance>,
}

/// A final a session must receive, with the frames whose send instants its latencies are
/// measured from.
#[derive(Debug, Clone)]
pub struct ExpectedFinal {
    /// Index into [`Script::utterances`].
    pub utterance: usize,
    /// Session frame (0 = the session's first frame) holding the sample that decides the final.
    pub decision_frame: u64,
    /// Session frame holding each word's last sample, in word order.
    pub word_end_frames: Vec<u64>,
    /// Added to a loop sample position to get the session's sample position (the session clock).
    pub sample_shift: i64,
}

/// One session's part: which frames it sends, and which finals it must get back.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Loop frame the session starts at (possibly `frames`: the loop's start, one lap on).
    pub first_frame: u64,
    /// Frames the session sends (it wraps around the loop when longer).
    pub frame_count: u64,
    pub finals: Vec<ExpectedFinal>,
    /// Session frames whose send instants are recorded (every decision and word-end frame),
    /// ascending, without duplicates.
    pub marks: Vec<u64>,
}

impl Plan {
    /// Where a session frame's send instant is in the recorded marks.
    pub fn mark_index(&self, frame: u64) -> Option<usize> {
        self.marks.binary_search(&frame).ok()
    }

    /// Seconds of audio the session sends.
    pub fn audio_secs(&self, script: &Script) -> f64 {
        (self.frame_count * script.format.frame_ms) as f64 / 1000.0
    }
}

/// A small deterministic generator (the script must be the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// Text of utterances whose audio lasts about `secs` seconds (at least two utterances).
fn script_text(secs: f64) -> String {
    let mut rng = Lcg(0x5eed_b0a7);
    let mut text = String::new();
    let mut ms = 0u64;
    let mut utterances = 0;
    while (ms as f64) < secs * 1000.0 || utterances < 2 {
        let count = MIN_WORDS + rng.next(MAX_WORDS - MIN_WORDS + 1);
        for w in 0..count {
            let word = VOCABULARY[rng.next(VOCABULARY.len())];
            if w > 0 {
                text.push(' ');
                ms += synth::WORD_GAP_MS;
            }
            text.push_str(word);
            let chars = word.len() as u64;
            ms += chars * synth::TONE_MS + (chars - 1) * synth::LETTER_GAP_MS;
        }
        text.push_str(". ");
        ms += synth::PAUSE_MS;
        utterances += 1;
    }
    text
}

impl Script {
    /// Builds and verifies the loop: about `loop_secs` of audio in `format`.
    pub fn build(format: ScriptFormat, loop_secs: f64) -> Result<Script, String> {
        if !(8_000..=48_000).contains(&format.sample_rate_hz) {
            return Err(format!(
                "sample rate {} Hz: must be 8000–48000",
                format.sample_rate_hz
            ));
        }
        let frame_samples = synth::ms_to_samples(format.sample_rate_hz, format.frame_ms);
        if frame_samples == 0 || format.frame_ms > 1_000 {
            return Err(format!(
                "frame of {} ms: must be 1–1000 ms",
                format.frame_ms
            ));
        }
        let sample_bytes = format.encoding.bytes_per_sample();
        let frame_bytes = frame_samples as usize * sample_bytes;
        let text = script_text(loop_secs);
        let encoded = synth::encode_with_timeline(&text, format.sample_rate_hz, format.encoding);
        let mut audio = encoded.audio;
        let total_samples = encoded.total_samples.div_ceil(frame_samples) * frame_samples;
        // Padding lengthens the last pause: silence is silence (µ-law silence is 0xFF).
        let silence = match format.encoding {
            SynthEncoding::Linear16 => 0u8,
            SynthEncoding::Mulaw => 0xFF,
            SynthEncoding::Alaw => voxgate_actors::audio::alaw::encode_sample(0),
        };
        audio.resize(total_samples as usize * sample_bytes, silence);
        let frames = total_samples / frame_samples;

        // What the recogniser makes of it, decided sample by sample.
        let mut decoder = Decoder::new(format.sample_rate_hz, format.encoding, 1, false);
        let mut finals = decoder.push(&audio);
        finals.retain(|r| r.is_final);
        let expected = synth::expected_transcripts(&text);
        let heard: Vec<String> = finals.iter().map(|r| r.transcript()).collect();
        if heard != expected {
            return Err(format!(
                "the emulator's decoder does not hear the bench script as written \
                 ({} finals heard, {} expected) — the synthetic code and the bench disagree",
                heard.len(),
                expected.len()
            ));
        }
        let mut utterances = Vec::with_capacity(finals.len());
        for (u, recognition) in finals.iter().enumerate() {
            let safe_frame = recognition.end_sample.div_ceil(frame_samples);
            // The next utterance's first tone (the loop's first word after the last utterance).
            let next_start = finals
                .get(u + 1)
                .and_then(|r| r.words.first())
                .map_or(total_samples, |w| w.start_sample);
            if safe_frame * frame_samples > next_start {
                return Err(format!(
                    "frames of {} ms are too long: no frame boundary falls between a final's \
                     decision and the next utterance",
                    format.frame_ms
                ));
            }
            utterances.push(Utterance {
                transcript: recognition.transcript(),
                words: recognition
                    .words
                    .iter()
                    .map(|w| ScriptWord {
                        word: w.word.clone(),
                        start_sample: w.start_sample,
                        end_sample: w.end_sample,
                    })
                    .collect(),
                decision_sample: recognition.end_sample,
                safe_frame,
            });
        }
        Ok(Script {
            format,
            frame_samples,
            frame_bytes,
            audio: Bytes::from(audio),
            frames,
            utterances,
        })
    }

    /// Samples in one loop.
    pub fn loop_samples(&self) -> u64 {
        self.frames * self.frame_samples
    }

    /// The audio of loop frame `index` (taken modulo the loop).
    pub fn frame_audio(&self, index: u64) -> Bytes {
        let start = (index % self.frames) as usize * self.frame_bytes;
        self.audio.slice(start..start + self.frame_bytes)
    }

    /// The plan of a session that starts after utterance `after` (any number: taken modulo the
    /// loop's utterances) and streams whole utterances for at most `secs` seconds — at least one.
    pub fn plan(&self, after: usize, secs: f64) -> Plan {
        let count = self.utterances.len();
        let start_utterance = after % count;
        // Not reduced modulo the loop: the padding after the last utterance may end exactly at
        // the loop's end, and the next utterance is then the loop's first, one lap on.
        let first_frame = self.utterances[start_utterance].safe_frame;
        let budget_frames = ((secs * 1000.0) / self.format.frame_ms as f64)
            .floor()
            .max(0.0) as u64;
        let loop_samples = self.loop_samples() as i64;
        let origin = (first_frame * self.frame_samples) as i64;
        let mut finals = Vec::new();
        let mut frame_count = 0;
        // Loop frames are unrolled: `lap` counts the wraps past the loop's end.
        let mut lap = 0i64;
        let mut u = start_utterance;
        loop {
            u += 1;
            if u == count {
                u = 0;
                lap += 1;
            }
            // The first utterance after the start may lie in the next lap when the start is the
            // padding after the loop's last utterance.
            let utterance = &self.utterances[u];
            let shift = lap * loop_samples - origin;
            let end_frame = (utterance.safe_frame as i64 + lap * self.frames as i64
                - first_frame as i64) as u64;
            if end_frame > budget_frames && !finals.is_empty() {
                break;
            }
            let session_frame =
                |sample: u64| ((sample as i64 + shift) as u64 - 1) / self.frame_samples;
            finals.push(ExpectedFinal {
                utterance: u,
                decision_frame: session_frame(utterance.decision_sample),
                word_end_frames: utterance
                    .words
                    .iter()
                    .map(|w| session_frame(w.end_sample))
                    .collect(),
                sample_shift: shift,
            });
            frame_count = end_frame;
        }
        let mut marks: Vec<u64> = finals
            .iter()
            .flat_map(|f| {
                std::iter::once(f.decision_frame).chain(f.word_end_frames.iter().copied())
            })
            .collect();
        marks.sort_unstable();
        marks.dedup();
        Plan {
            first_frame,
            frame_count,
            finals,
            marks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(frame_ms: u64) -> ScriptFormat {
        ScriptFormat {
            sample_rate_hz: 16_000,
            encoding: SynthEncoding::Linear16,
            frame_ms,
        }
    }

    /// The loop is whole frames, and decoding any plan's frames from its start gives exactly the
    /// plan's finals, decided in the plan's decision frames, with word times on the session clock.
    #[test]
    fn plans_match_what_the_decoder_hears_from_their_start() {
        let script = match Script::build(format(100), 20.0) {
            Ok(s) => s,
            Err(e) => panic!("script: {e}"),
        };
        assert_eq!(
            script.audio.len() as u64,
            script.frames * script.frame_bytes as u64
        );
        for after in [0, 3, script.utterances.len() - 1] {
            // 50 s: longer than the loop, so the plan wraps.
            let plan = script.plan(after, 50.0);
            assert!(plan.frame_count <= 500, "{}", plan.frame_count);
            let mut decoder = Decoder::new(16_000, SynthEncoding::Linear16, 1, false);
            let mut heard = Vec::new();
            for k in 0..plan.frame_count {
                for event in decoder.push(&script.frame_audio(plan.first_frame + k)) {
                    if event.is_final {
                        heard.push((k, event));
                    }
                }
            }
            let tail: Vec<_> = decoder
                .finish()
                .into_iter()
                .filter(|e| e.is_final)
                .collect();
            assert!(
                tail.is_empty(),
                "a plan ends after its last final: {tail:?}"
            );
            assert_eq!(heard.len(), plan.finals.len(), "after {after}");
            for ((frame, event), expected) in heard.iter().zip(&plan.finals) {
                let utterance = &script.utterances[expected.utterance];
                assert_eq!(event.transcript(), utterance.transcript);
                assert_eq!(*frame, expected.decision_frame);
                for (word, spec) in event.words.iter().zip(&utterance.words) {
                    assert_eq!(
                        word.end_sample as i64,
                        spec.end_sample as i64 + expected.sample_shift
                    );
                }
                for (end_frame, word) in expected.word_end_frames.iter().zip(&event.words) {
                    assert_eq!(*end_frame, (word.end_sample - 1) / script.frame_samples);
                }
            }
        }
    }

    /// A short budget still gives one utterance; plans never exceed their budget otherwise.
    #[test]
    fn budgets_are_whole_utterances() {
        let script = match Script::build(format(100), 10.0) {
            Ok(s) => s,
            Err(e) => panic!("script: {e}"),
        };
        assert_eq!(script.plan(0, 0.0).finals.len(), 1);
        let plan = script.plan(1, 5.0);
        assert!(plan.frame_count <= 50);
        assert!(plan.finals.len() >= 2, "{}", plan.finals.len());
    }

    /// Frames too long for the pauses are refused with a reason.
    #[test]
    fn frames_longer_than_the_pause_window_are_refused() {
        assert!(Script::build(format(700), 5.0).is_err());
    }
}
