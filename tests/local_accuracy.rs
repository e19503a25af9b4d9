//! The gateway adds no loss: every LibriVox clip of `pocketsphinx-testdata`, streamed in 100 ms
//! frames at real time through the real pipeline (AudioBuffer + StreamSupervisor + the segment
//! recognizer on PocketSphinx, a probe in the session's place), is recognised word for word as
//! the engine recognises the whole file cut into the same segments, each decoded directly. Word
//! error rates against the references are printed (`cargo test --release --test local_accuracy
//! -- --nocapture`) and reported in `docs/accuracy.md`; PocketSphinx decoding each whole file as
//! one utterance is shown for reference.

#![cfg(feature = "local")]

mod common;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::librivox::{clips, normalise, word_error_rate, word_errors, Clip};
use common::segments;
use voxgate_actors::audio::mulaw;
use voxgate_actors::audio::{AudioFormat, Encoding};
use voxgate_actors::messages::{AudioIn, EndOfAudio, PipelineError, PipelineFinished, Transcript};
use voxgate_actors::pipeline::{Pipeline, PipelineFactory};
use voxgate_actors::recognizer::local::pocketsphinx::{self, PocketSphinxDecoder};
use voxgate_actors::recognizer::local::resample::Resampler;
use voxgate_actors::recognizer::local::segment_engine::stream_settings;
use voxgate_actors::recognizer::local::SegmentRecognizerFactory;
use voxgate_actors::settings::{AudioSettings, LocalSettings, SupervisionSettings};
use voxgate_actors::testing::{start_config, Probe};

/// What the engine says for a clip fed directly (no actors): cut into segments as a stream is,
/// each decoded; and the whole file decoded as one utterance.
struct Direct {
    segmented: Vec<String>,
    whole: Vec<String>,
    /// The clip as 8 kHz MULAW telephony audio, segmented and decoded.
    telephony: Vec<String>,
}

/// `samples` (16 kHz) as 8 kHz MULAW telephony audio: resampled to 8 kHz, µ-law encoded.
fn as_telephony(samples: &[i16]) -> Vec<u8> {
    let mut narrow = Vec::new();
    let mut down = Resampler::new(16_000, 8_000);
    down.push(samples, &mut narrow);
    down.finish(&mut narrow);
    narrow.iter().map(|&s| mulaw::encode_sample(s)).collect()
}

fn decode_directly(clips: &[Clip]) -> Vec<Direct> {
    let settings = LocalSettings::default();
    let mut decoder = PocketSphinxDecoder::load(&settings).unwrap_or_else(|e| panic!("{e}"));
    let cuts = stream_settings(&settings, pocketsphinx::MODEL_TRAITS);
    let wide = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: 16_000,
    };
    let narrow = AudioFormat {
        encoding: Encoding::Mulaw,
        sample_rate_hz: 8_000,
    };
    clips
        .iter()
        .map(|clip| {
            let started = Instant::now();
            let segmented = segments::direct_text(&mut decoder, &cuts, wide, &clip.bytes());
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{}: {:.2} s of audio decoded in {:.2} s ({:.2}x real time)",
                clip.id,
                clip.seconds(),
                elapsed,
                elapsed / clip.seconds()
            );
            let whole = decoder
                .decode_pcm(&clip.samples)
                .unwrap_or_else(|e| panic!("{e}"));
            let telephony =
                segments::direct_text(&mut decoder, &cuts, narrow, &as_telephony(&clip.samples));
            Direct {
                segmented: normalise(&segmented),
                whole: normalise(&whole.text),
                telephony: normalise(&telephony),
            }
        })
        .collect()
}

/// Streams one clip through `pipeline` in 100 ms frames at real time, then `stop`; returns the
/// final transcripts.
async fn through_the_pipeline(pipeline: &Pipeline, clip: &Clip) -> Vec<String> {
    let (session, log) = Probe::start_new();
    let config = Arc::new(start_config());
    let handle = pipeline.start(
        Arc::from(clip.id.as_str()),
        config,
        Probe::session_links(&session),
    );
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for frame in clip.bytes().chunks(3_200) {
        ticker.tick().await;
        handle.audio.do_send(AudioIn {
            data: Bytes::copy_from_slice(frame),
            audio_id: None,
        });
    }
    handle.end.do_send(EndOfAudio);
    let finished = log
        .wait_count::<PipelineFinished>(1, Duration::from_secs(60))
        .await;
    assert_eq!(
        finished.len(),
        1,
        "{}: the pipeline did not finish: errors {:?}",
        clip.id,
        log.all::<PipelineError>()
    );
    assert_eq!(finished[0].summary.restarts, 0, "{}", clip.id);
    let finals: Vec<String> = log
        .all::<Transcript>()
        .into_iter()
        .filter(|t| t.is_final)
        .map(|t| t.transcript)
        .collect();
    normalise(&finals.join(" "))
}

#[actix_rt::test]
async fn librivox_through_the_pipeline_is_word_for_word_the_engine_fed_directly() {
    let clips = clips();
    let direct = decode_directly(&clips);
    let engine = pocketsphinx::start(&LocalSettings {
        workers: 2,
        // Words are measured here, admission apart: a busy test machine must not refuse.
        max_load: 1.0,
        max_queue_wait_ms: 60_000,
        ..LocalSettings::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let pipeline = Pipeline {
        recognizers: Rc::new(SegmentRecognizerFactory::new(engine)),
        audio: AudioSettings::default(),
        supervision: SupervisionSettings::default(),
        breaker: std::sync::Arc::new(
            voxgate_actors::circuit_breaker::CircuitBreaker::from_settings(
                &SupervisionSettings::default(),
            ),
        ),
        ack_interval_ms: 500,
    };
    let started = Instant::now();
    let streamed =
        futures_util::future::join_all(clips.iter().map(|c| through_the_pipeline(&pipeline, c)))
            .await;
    println!(
        "{} clips streamed concurrently in {:.1} s",
        clips.len(),
        started.elapsed().as_secs_f64()
    );

    println!(
        "| clip | words | whole-file errors | direct errors | pipeline errors | 8 kHz MULAW errors |"
    );
    for ((clip, direct), streamed) in clips.iter().zip(&direct).zip(&streamed) {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            clip.id,
            clip.reference.len(),
            word_errors(&clip.reference, &direct.whole),
            word_errors(&clip.reference, &direct.segmented),
            word_errors(&clip.reference, streamed),
            word_errors(&clip.reference, &direct.telephony)
        );
        println!("   reference: {}", clip.reference.join(" "));
        println!("   whole:     {}", direct.whole.join(" "));
        println!("   direct:    {}", direct.segmented.join(" "));
        println!("   pipeline:  {}", streamed.join(" "));
        println!("   8k MULAW:  {}", direct.telephony.join(" "));
        assert_eq!(
            streamed, &direct.segmented,
            "{}: the gateway changed the words",
            clip.id
        );
    }
    let rate = |hypotheses: Vec<&Vec<String>>| {
        let pairs: Vec<(&[String], &[String])> = clips
            .iter()
            .zip(hypotheses)
            .map(|(c, h)| (c.reference.as_slice(), h.as_slice()))
            .collect();
        word_error_rate(&pairs)
    };
    let batch = rate(direct.iter().map(|d| &d.whole).collect());
    let direct_rate = rate(direct.iter().map(|d| &d.segmented).collect());
    let pipeline_rate = rate(streamed.iter().collect());
    let telephony = rate(direct.iter().map(|d| &d.telephony).collect());
    println!(
        "WER whole file {batch:?} direct {direct_rate:?} pipeline {pipeline_rate:?} \
         8 kHz MULAW {telephony:?}"
    );
    assert!(
        pipeline_rate.0 <= direct_rate.0,
        "through the gateway: {pipeline_rate:?}, directly: {direct_rate:?}"
    );
    // A sanity bound, far above the engine's measured rate: catches a broken engine or a
    // pipeline that loses audio, not ordinary PocketSphinx errors.
    assert!(pipeline_rate.2 < 0.5, "WER {pipeline_rate:?}");
    // Narrowband audio costs a wideband model some words, not most of them (without the spectral
    // folding of the converter it would).
    assert!(telephony.2 < 0.6, "8 kHz MULAW WER {telephony:?}");
}

#[test]
fn word_errors_count_the_best_alignment() {
    let w = |s: &str| normalise(s);
    assert_eq!(word_errors(&w("a b c"), &w("a b c")), 0);
    assert_eq!(word_errors(&w("a b c"), &w("a x c")), 1);
    assert_eq!(word_errors(&w("a b c"), &w("a c")), 1);
    assert_eq!(word_errors(&w("a b c"), &w("a b c d e")), 2);
    assert_eq!(word_errors(&w("a b c"), &w("")), 3);
    assert_eq!(w("Mr. John's HOUSE"), vec!["mister", "john's", "house"]);
}
