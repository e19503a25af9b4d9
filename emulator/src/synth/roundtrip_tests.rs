//! Encoder ⇄ decoder round trips: random texts, random chunkings, random start offsets, several
//! rates and both encodings must give exactly the expected transcripts, word times within a tone
//! edge, and identical events however the audio is cut.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// A random text of `utterances` utterances over the whole alphabet, with assorted separators.
fn random_text(rng: &mut StdRng, utterances: usize) -> String {
    let mut text = String::new();
    for _ in 0..utterances {
        let words = rng.random_range(1..5);
        for w in 0..words {
            if w > 0 {
                text.push_str([" ", "  ", "-", " / "][rng.random_range(0..4)]);
            }
            for _ in 0..rng.random_range(1..7) {
                let ch = ALPHABET[rng.random_range(0..ALPHABET.len())] as char;
                text.push(if rng.random_bool(0.2) {
                    ch.to_ascii_uppercase()
                } else {
                    ch
                });
            }
        }
        text.push_str([". ", ", ", "! ", "? ", "... "][rng.random_range(0..5)]);
    }
    text
}

/// Decodes `audio` fed in random chunk sizes (1 byte to `max_chunk`), then half-closes.
fn decode_chunked(
    audio: &[u8],
    rate: u32,
    encoding: SynthEncoding,
    interim: bool,
    rng: &mut StdRng,
    max_chunk: usize,
) -> Vec<Recognition> {
    let mut decoder = Decoder::new(rate, encoding, 1, interim);
    let mut events = Vec::new();
    let mut rest = audio;
    while !rest.is_empty() {
        let n = rng.random_range(1..=max_chunk).min(rest.len());
        events.extend(decoder.push(&rest[..n]));
        rest = &rest[n..];
    }
    events.extend(decoder.finish());
    events
}

fn finals(events: &[Recognition]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.is_final)
        .map(Recognition::transcript)
        .collect()
}

fn silence(samples: u64, encoding: SynthEncoding) -> Vec<u8> {
    match encoding {
        SynthEncoding::Linear16 => vec![0; 2 * samples as usize],
        SynthEncoding::Mulaw => vec![0xFF; samples as usize],
        SynthEncoding::Alaw => {
            vec![voxgate_actors::audio::alaw::encode_sample(0); samples as usize]
        }
    }
}

/// Every decoded final word lies within one tone edge (1.5 ms) of where the encoder put it,
/// shifted by `offset` samples.
fn assert_word_times(events: &[Recognition], encoded: &Encoded, rate: u32, offset: u64) {
    let tolerance = u64::from(rate) * 3 / 2000;
    let decoded: Vec<&DecodedWord> = events
        .iter()
        .filter(|e| e.is_final)
        .flat_map(|e| &e.words)
        .collect();
    assert_eq!(decoded.len(), encoded.words.len());
    for (got, want) in decoded.iter().zip(&encoded.words) {
        assert_eq!(got.word, want.word);
        let start = want.start_sample + offset;
        let end = want.end_sample + offset;
        assert!(
            got.start_sample >= start && got.start_sample <= start + tolerance,
            "{}: start {} vs {start}",
            got.word,
            got.start_sample
        );
        assert!(
            got.end_sample <= end && got.end_sample + tolerance >= end,
            "{}: end {} vs {end}",
            got.word,
            got.end_sample
        );
        assert!(
            got.confidence > 0.8,
            "{}: confidence {}",
            got.word,
            got.confidence
        );
    }
}

fn round_trips(rate: u32, encoding: SynthEncoding, seed: u64, cases: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..cases {
        let utterances = rng.random_range(1..4);
        let text = random_text(&mut rng, utterances);
        let encoded = encode_with_timeline(&text, rate, encoding);
        let offset = rng.random_range(0..u64::from(rate) / 4);
        let mut audio = silence(offset, encoding);
        audio.extend_from_slice(&encoded.audio);
        let whole = {
            let mut decoder = Decoder::new(rate, encoding, 1, true);
            let mut events = decoder.push(&audio);
            events.extend(decoder.finish());
            events
        };
        assert_eq!(
            finals(&whole),
            expected_transcripts(&text),
            "case {case} at {rate} Hz {encoding:?}: {text:?}"
        );
        assert_word_times(&whole, &encoded, rate, offset);
        let chunked = decode_chunked(&audio, rate, encoding, true, &mut rng, 7_000);
        assert_eq!(chunked, whole, "case {case}: chunking changed the events");
    }
}

#[test]
fn round_trip_16k_linear16() {
    round_trips(16_000, SynthEncoding::Linear16, 1, 40);
}

#[test]
fn round_trip_8k_mulaw() {
    round_trips(8_000, SynthEncoding::Mulaw, 2, 40);
}

#[test]
fn round_trip_8k_alaw() {
    round_trips(8_000, SynthEncoding::Alaw, 7, 40);
}

#[test]
fn round_trip_odd_rates() {
    round_trips(44_100, SynthEncoding::Linear16, 3, 8);
    round_trips(48_000, SynthEncoding::Linear16, 4, 8);
    round_trips(22_050, SynthEncoding::Mulaw, 5, 8);
    round_trips(11_025, SynthEncoding::Linear16, 6, 8);
}

/// A stream that starts anywhere inside a pause (as after a restart from a final's end) hears the
/// following utterances exactly as the first stream did, shifted by the start offset.
#[test]
fn starting_inside_a_pause_shifts_results_exactly() {
    let mut rng = StdRng::seed_from_u64(7);
    for (rate, encoding) in [
        (16_000, SynthEncoding::Linear16),
        (8_000, SynthEncoding::Mulaw),
        (8_000, SynthEncoding::Alaw),
    ] {
        for _ in 0..20 {
            let text = random_text(&mut rng, 3);
            let encoded = encode_with_timeline(&text, rate, encoding);
            let full = decode_chunked(&encoded.audio, rate, encoding, true, &mut rng, 4_000);
            let first_finals: Vec<&Recognition> = full.iter().filter(|e| e.is_final).collect();
            // Cut inside the first pause: from its start to just before the next word.
            let pause_start = encoded.utterance_ends[0];
            let pause = ms_to_samples(rate, PAUSE_MS);
            let cut = pause_start + rng.random_range(0..pause);
            let bytes = encoding.bytes_per_sample();
            let tail = &encoded.audio[cut as usize * bytes..];
            let later = decode_chunked(tail, rate, encoding, true, &mut rng, 4_000);
            let later_finals: Vec<&Recognition> = later.iter().filter(|e| e.is_final).collect();
            // Finals after the cut: everything but the first utterance, shifted by `cut`.
            assert_eq!(
                later_finals.len(),
                first_finals.len() - 1,
                "{text:?} cut at {cut}"
            );
            for (late, early) in later_finals.iter().zip(&first_finals[1..]) {
                assert_eq!(late.transcript(), early.transcript());
                assert_eq!(late.end_sample + cut, early.end_sample);
                for (a, b) in late.words.iter().zip(&early.words) {
                    assert_eq!(a.start_sample + cut, b.start_sample);
                    assert_eq!(a.end_sample + cut, b.end_sample);
                    assert_eq!(a.confidence, b.confidence);
                }
            }
            // The interims after the cut are the same too.
            let shifted: Vec<(String, u64)> = later
                .iter()
                .filter(|e| !e.is_final)
                .map(|e| (e.transcript(), e.end_sample + cut))
                .collect();
            let first_final = full.iter().position(|e| e.is_final).unwrap_or(full.len());
            let original: Vec<(String, u64)> = full[first_final..]
                .iter()
                .filter(|e| !e.is_final)
                .map(|e| (e.transcript(), e.end_sample))
                .collect();
            assert_eq!(shifted, original);
        }
    }
}

/// A final is decided 300 ms into the pause, which is where `result_end_time` points: inside the
/// pause, before the next word.
#[test]
fn finals_end_inside_the_following_pause() {
    let encoded = encode_with_timeline("one two. three", 16_000, SynthEncoding::Linear16);
    let mut decoder = Decoder::new(16_000, SynthEncoding::Linear16, 1, false);
    let events = decoder.push(&encoded.audio);
    assert_eq!(events.len(), 2);
    for (event, &utterance_end) in events.iter().zip(&encoded.utterance_ends) {
        let after = event.end_sample - utterance_end;
        assert!(
            (4_750..=4_800).contains(&after),
            "{after} samples after the last word"
        );
    }
    assert!(decoder.finish().is_empty());
}

/// Interims come before their final, only when enabled, grow towards the final's text, and are at
/// least 100 ms of audio apart.
#[test]
fn interims_precede_finals_and_are_rate_limited() {
    let text = "alpha beta gamma. delta";
    let encoded = encode_with_timeline(text, 16_000, SynthEncoding::Linear16);
    let mut decoder = Decoder::new(16_000, SynthEncoding::Linear16, 1, true);
    let mut events = decoder.push(&encoded.audio);
    events.extend(decoder.finish());
    let mut interims_since_final = Vec::new();
    let mut last_interim_at: Option<u64> = None;
    for event in &events {
        if event.is_final {
            assert!(
                !interims_since_final.is_empty(),
                "no interim before {event:?}"
            );
            for interim in &interims_since_final {
                let interim: &String = interim;
                assert!(
                    event.transcript().starts_with(interim.as_str()),
                    "{interim:?} is not a prefix of {:?}",
                    event.transcript()
                );
            }
            interims_since_final.clear();
            last_interim_at = None;
        } else {
            if let Some(last) = last_interim_at {
                assert!(event.end_sample >= last + 1_600, "interims too close");
            }
            last_interim_at = Some(event.end_sample);
            interims_since_final.push(event.transcript());
        }
    }
    let mut quiet = Decoder::new(16_000, SynthEncoding::Linear16, 1, false);
    let mut events = quiet.push(&encoded.audio);
    events.extend(quiet.finish());
    assert!(events.iter().all(|e| e.is_final));
}

/// Half-close in the middle of a word: the letters heard so far are the last final.
#[test]
fn finish_flushes_the_word_in_progress() {
    let encoded = encode_with_timeline("hello world", 16_000, SynthEncoding::Linear16);
    // Cut right after the last tone of "world": no trailing pause at all.
    let end = encoded.words[1].end_sample as usize * 2;
    let mut decoder = Decoder::new(16_000, SynthEncoding::Linear16, 1, false);
    let events = decoder.push(&encoded.audio[..end]);
    assert!(
        events.is_empty(),
        "nothing final before the pause: {events:?}"
    );
    let flushed = decoder.finish();
    assert_eq!(finals(&flushed), vec!["hello world"]);
    assert_eq!(flushed[0].end_sample, encoded.words[1].end_sample);
}

/// Only the first channel of interleaved audio is heard.
#[test]
fn stereo_hears_the_first_channel() {
    let left = encode("left side", 16_000, SynthEncoding::Linear16);
    let right = encode("other words entirely", 16_000, SynthEncoding::Linear16);
    let mut stereo = Vec::new();
    for i in (0..left.len().max(right.len())).step_by(2) {
        stereo.extend_from_slice(left.get(i..i + 2).unwrap_or(&[0, 0]));
        stereo.extend_from_slice(right.get(i..i + 2).unwrap_or(&[0, 0]));
    }
    let mut decoder = Decoder::new(16_000, SynthEncoding::Linear16, 2, false);
    let mut events = decoder.push(&stereo);
    events.extend(decoder.finish());
    assert_eq!(finals(&events), vec!["left side"]);
}

/// Audio that is not synthetic (noise, a long tone, a chord) yields no words.
#[test]
fn other_sounds_are_not_words() {
    let mut rng = StdRng::seed_from_u64(9);
    let noise: Vec<u8> = (0..16_000 * 2)
        .flat_map(|_| rng.random_range(-12_000i16..12_000).to_le_bytes())
        .collect();
    let long_tone: Vec<u8> = (0..16_000)
        .flat_map(|n| {
            let x = 8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 16_000.0).sin();
            (x as i16).to_le_bytes()
        })
        .collect();
    let chord: Vec<u8> = (0..480)
        .flat_map(|n| {
            let t = 2.0 * std::f64::consts::PI * n as f64 / 16_000.0;
            let x = 5000.0 * ((600.0 * t).sin() + (1400.0 * t).sin() + (2600.0 * t).sin());
            (x as i16).to_le_bytes()
        })
        .chain(std::iter::repeat_n(0u8, 16_000))
        .collect();
    for audio in [noise, long_tone, chord] {
        let mut decoder = Decoder::new(16_000, SynthEncoding::Linear16, 1, true);
        let mut events = decoder.push(&audio);
        events.extend(decoder.finish());
        assert!(events.is_empty(), "{events:?}");
    }
}

/// How much audio one core decodes per second (a measurement for the report and the benchmark,
/// not a check): `cargo test --release --lib decoder_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, run explicitly"]
fn decoder_throughput() {
    let mut rng = StdRng::seed_from_u64(11);
    let text = random_text(&mut rng, 40);
    for (rate, encoding) in [
        (16_000, SynthEncoding::Linear16),
        (8_000, SynthEncoding::Mulaw),
        (48_000, SynthEncoding::Linear16),
    ] {
        let audio = encode(&text, rate, encoding);
        let audio_secs = audio.len() as f64 / (rate as f64 * encoding.bytes_per_sample() as f64);
        let chunk = ms_to_samples(rate, 100) as usize * encoding.bytes_per_sample();
        let started = std::time::Instant::now();
        let mut finals = 0;
        for _ in 0..5 {
            let mut decoder = Decoder::new(rate, encoding, 1, true);
            for piece in audio.chunks(chunk) {
                finals += decoder.push(piece).iter().filter(|e| e.is_final).count();
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert!(finals >= 5 * 39);
        println!(
            "{rate} Hz {encoding:?}: {:.0} s of audio per CPU second ({audio_secs:.1} s × 5 in {elapsed:.3} s)",
            5.0 * audio_secs / elapsed
        );
    }
}

/// A stream may also start anywhere, even inside a tone (the gateway dropped old replay audio): the
/// words cut into are garbled or lost, but every utterance that starts after the cut's next pause is
/// heard exactly.
#[test]
fn starting_anywhere_leaves_later_utterances_intact() {
    let mut rng = StdRng::seed_from_u64(12);
    for _ in 0..60 {
        let text = random_text(&mut rng, 3);
        let encoded = encode_with_timeline(&text, 16_000, SynthEncoding::Linear16);
        let cut = rng.random_range(0..encoded.utterance_ends[0]);
        let tail = &encoded.audio[cut as usize * 2..];
        let events = decode_chunked(tail, 16_000, SynthEncoding::Linear16, true, &mut rng, 5_000);
        let heard = finals(&events);
        let expected = expected_transcripts(&text);
        assert!(
            heard.len() >= expected.len() - 1,
            "{text:?} cut at {cut}: {heard:?}"
        );
        assert_eq!(heard[heard.len() - (expected.len() - 1)..], expected[1..]);
    }
}
