//! The emulator as a client sees it: a real server on 127.0.0.1:0 (in-process via `spawn`, and once
//! as the `voxgate emulator` process), reached with the googleapis `SpeechClient` over a plaintext
//! tonic channel. One test per Google rule, per recognition property and per fault kind.

use std::time::{Duration, Instant};

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    recognition_config::AudioEncoding, streaming_recognize_request::StreamingRequest,
    streaming_recognize_response::SpeechEventType, RecognizeRequest,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use voxgate_emulator::synth::{self, SynthEncoding};
use voxgate_emulator::{EmulatorConfig, FaultConfig, FaultKind, FaultSchedule, Outage};

mod common;

use common::*;

const TEXT: &str = "The quick brown fox. Jumps over, the lazy dog";

// ───────────────────────────── message order and config ─────────────────────────────

/// Audio before the config, or a second config, is INVALID_ARGUMENT "Malordered Data Received".
#[tokio::test]
async fn requests_must_be_one_config_then_audio() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let audio_first = run_call(
            &mut client,
            audio_request(vec![0; 320]),
            vec![],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(audio_first.code(), Code::InvalidArgument);
        assert!(audio_first
            .message()
            .starts_with("Malordered Data Received"));

        let setup = Setup::default();
        let (tx, rx) = mpsc::channel(4);
        for request in [
            config_request(&setup),
            audio_request(vec![0; 320]),
            config_request(&setup),
        ] {
            tx.send(request).await.expect("queue request");
        }
        let response = client
            .streaming_recognize(ReceiverStream::new(rx))
            .await
            .expect("call starts");
        let twice = drain(response.into_inner()).await;
        assert_eq!(twice.code(), Code::InvalidArgument);
        assert!(twice.message().contains("Expected audio but none was set"));
        drop(tx);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// A config Google would reject (sample rate, language) is INVALID_ARGUMENT.
#[tokio::test]
async fn bad_configs_are_invalid_argument() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let bad_rate = Setup {
            rate: 96_000,
            ..Setup::default()
        };
        let outcome = run_call(
            &mut client,
            config_request(&bad_rate),
            vec![],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(outcome.code(), Code::InvalidArgument);
        assert_eq!(
            outcome.message(),
            "Invalid recognition 'config': bad sample rate hertz."
        );
        let mut no_language = config_request(&Setup::default());
        if let Some(StreamingRequest::StreamingConfig(c)) = &mut no_language.streaming_request {
            if let Some(config) = &mut c.config {
                config.language_code.clear();
            }
        }
        let outcome = run_call(&mut client, no_language, vec![], Pace::Burst, true).await;
        assert_eq!(outcome.code(), Code::InvalidArgument);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// Only StreamingRecognize is served; other methods are UNIMPLEMENTED.
#[tokio::test]
async fn other_methods_are_unimplemented() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let status = client
            .recognize(RecognizeRequest::default())
            .await
            .expect_err("Recognize is not served");
        assert_eq!(status.code(), Code::Unimplemented);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

// ───────────────────────────── limits ─────────────────────────────

/// A request with more than 25 600 bytes of audio is INVALID_ARGUMENT.
#[tokio::test]
async fn oversize_requests_are_invalid_argument() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let exactly = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 25_600]],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(exactly.code(), Code::Ok, "{:?}", exactly.end);
        let over = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 25_602]],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(over.code(), Code::InvalidArgument);
        assert_eq!(
            over.message(),
            "Audio chunk can be of a maximum of 25600 bytes. Received audio of 25602 bytes instead."
        );
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// Past the stream limit (wall time), the call ends with OUT_OF_RANGE naming the limit; results
/// already sent stand.
#[tokio::test]
async fn stream_limit_is_out_of_range() {
    within(async {
        let emulator = start(EmulatorConfig {
            stream_limit: Duration::from_millis(1_500),
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        // "hi" is final after ~0.4 s of audio; then silence at real time past the limit.
        let mut audio = synth::encode("hi.", 16_000, SynthEncoding::Linear16);
        audio.resize(16_000 * 2 * 3, 0);
        let started = Instant::now();
        let outcome = run_call(
            &mut client,
            config_request(&Setup::default()),
            fixed_chunks(&audio, 3_200),
            Pace::Every(Duration::from_millis(100)),
            false,
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(outcome.code(), Code::OutOfRange);
        assert_eq!(
            outcome.message(),
            "Exceeded maximum allowed stream duration of 1.5 seconds."
        );
        assert!(
            elapsed >= Duration::from_millis(1_500) && elapsed < Duration::from_millis(2_500),
            "ended after {elapsed:?}"
        );
        assert_eq!(outcome.final_transcripts(), vec!["hi"]);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// No audio for the audio timeout ends the call with Google's "Audio Timeout Error", counted from
/// the last audio.
#[tokio::test]
async fn audio_timeout_is_out_of_range() {
    within(async {
        let emulator = start(EmulatorConfig {
            audio_timeout: Duration::from_millis(400),
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        let started = Instant::now();
        // Six requests 100 ms apart keep it alive for 0.5 s; then silence on the wire.
        let outcome = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 3_200]; 6],
            Pace::Every(Duration::from_millis(100)),
            false,
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(outcome.code(), Code::OutOfRange);
        assert_eq!(
            outcome.message(),
            "Audio Timeout Error: Long duration elapsed without audio. \
             Audio should be sent close to real time."
        );
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1_600),
            "ended after {elapsed:?}"
        );
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// Audio beyond the burst allowance plus the real-time factor is "streamed too fast"; the same
/// audio within the allowance is fine.
#[tokio::test]
async fn audio_faster_than_allowed_is_out_of_range() {
    within(async {
        let emulator = start(EmulatorConfig {
            burst: Duration::from_millis(500),
            realtime_factor: 1.0,
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        let too_fast = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 3_200]; 10],
            Pace::Burst,
            false,
        )
        .await;
        assert_eq!(too_fast.code(), Code::OutOfRange);
        assert_eq!(
            too_fast.message(),
            "Audio data is being streamed too fast. Please stream audio data approximately at \
             real time."
        );
        let allowed = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 3_200]; 5],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(allowed.code(), Code::Ok, "{:?}", allowed.end);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// The connection carries at most 100 concurrent streams: the 101st waits (h2 flow control) until
/// one ends, then starts.
#[tokio::test]
async fn at_most_100_streams_per_connection() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let mut calls = Vec::new();
        for _ in 0..100 {
            calls.push(
                open_call(&mut client, config_request(&Setup::default()))
                    .await
                    .expect("stream within the cap opens"),
            );
        }
        let mut extra_client = client.clone();
        let extra = tokio::spawn(async move {
            open_call(&mut extra_client, config_request(&Setup::default())).await
        });
        // Let real time pass: the 101st must still be waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!extra.is_finished(), "the 101st stream started");
        assert_eq!(emulator.stats().streams_opened, 100);

        let first = calls.remove(0);
        assert_eq!(first.finish().await.code(), Code::Ok);
        let extra = extra
            .await
            .expect("task joins")
            .expect("the 101st stream starts once one ends");
        assert_eq!(emulator.stats().streams_opened, 101);
        assert_eq!(extra.finish().await.code(), Code::Ok);
        for call in calls {
            assert_eq!(call.finish().await.code(), Code::Ok);
        }
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

// ───────────────────────────── recognition ─────────────────────────────

/// 16 kHz LINEAR16 at real time in 100 ms requests, and in random request sizes as fast as the
/// allowance permits: the exact expected finals, identical in every respect.
#[tokio::test]
async fn transcripts_are_exact_whatever_the_chunking() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let client = client(&emulator).await;
        let audio = synth::encode(TEXT, 16_000, SynthEncoding::Linear16);
        let setup = Setup {
            word_times: true,
            ..Setup::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let random = random_chunks(&audio, &mut rng, 25_600);
        let (mut a, mut b) = (client.clone(), client.clone());
        let (real_time, bursty) = tokio::join!(
            run_call(
                &mut a,
                config_request(&setup),
                fixed_chunks(&audio, 3_200),
                Pace::Every(Duration::from_millis(100)),
                true
            ),
            run_call(&mut b, config_request(&setup), random, Pace::Burst, true),
        );
        assert_eq!(real_time.code(), Code::Ok, "{:?}", real_time.end);
        assert_eq!(bursty.code(), Code::Ok, "{:?}", bursty.end);
        assert_eq!(
            real_time.final_transcripts(),
            synth::expected_transcripts(TEXT)
        );
        assert_eq!(real_time.finals(), bursty.finals());
        for result in real_time.finals() {
            assert_eq!(result.language_code, "en-us");
            assert!(result.alternatives[0].confidence > 0.8);
        }
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// With interim results, every final is preceded by interims that grow towards it; word times are
/// where the encoder put the words; finals end inside the following pause.
#[tokio::test]
async fn interims_precede_finals_and_word_times_are_exact() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let encoded = synth::encode_with_timeline(TEXT, 16_000, SynthEncoding::Linear16);
        let setup = Setup {
            interim: true,
            word_times: true,
            ..Setup::default()
        };
        let outcome = run_call(
            &mut client,
            config_request(&setup),
            fixed_chunks(&encoded.audio, 3_200),
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(outcome.code(), Code::Ok, "{:?}", outcome.end);
        let mut interims = Vec::new();
        let mut finals = 0;
        for result in outcome.results() {
            let transcript = &result.alternatives[0].transcript;
            if result.is_final {
                assert!(!interims.is_empty(), "no interim before {transcript:?}");
                for interim in interims.drain(..) {
                    let interim: String = interim;
                    assert!(
                        transcript.starts_with(&interim),
                        "{interim:?} → {transcript:?}"
                    );
                }
                finals += 1;
            } else {
                assert_eq!(result.stability, 0.5);
                assert!(result.alternatives[0].words.is_empty());
                interims.push(transcript.clone());
            }
        }
        assert_eq!(finals, 3);
        let words: Vec<_> = outcome
            .finals()
            .iter()
            .flat_map(|r| r.alternatives[0].words.clone())
            .collect();
        assert_eq!(words.len(), encoded.words.len());
        for (got, want) in words.iter().zip(&encoded.words) {
            assert_eq!(got.word, want.word);
            let start = want.start_sample as f64 / 16_000.0;
            let end = want.end_sample as f64 / 16_000.0;
            assert!((secs(&got.start_time) - start).abs() < 0.002, "{got:?}");
            assert!((secs(&got.end_time) - end).abs() < 0.002, "{got:?}");
        }
        for (result, &utterance_end) in outcome.finals().iter().zip(&encoded.utterance_ends) {
            let pause_start = utterance_end as f64 / 16_000.0;
            let end = secs(&result.result_end_time);
            assert!(
                end > pause_start && end < pause_start + 0.6,
                "{end} vs {pause_start}"
            );
        }
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// A new stream fed the audio from a final's `result_end_time` on (what the gateway replays after a
/// restart) gives the remaining finals, with times shifted by exactly that offset.
#[tokio::test]
async fn replay_from_result_end_time_continues_exactly() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let audio = synth::encode(TEXT, 16_000, SynthEncoding::Linear16);
        let setup = Setup {
            word_times: true,
            ..Setup::default()
        };
        let whole = run_call(
            &mut client,
            config_request(&setup),
            fixed_chunks(&audio, 3_200),
            Pace::Burst,
            true,
        )
        .await;
        let finals = whole.finals();
        let cut_secs = secs(&finals[0].result_end_time);
        let cut_sample = (cut_secs * 16_000.0).round() as usize;
        let mut rng = StdRng::seed_from_u64(8);
        let replay = run_call(
            &mut client,
            config_request(&setup),
            random_chunks(&audio[cut_sample * 2..], &mut rng, 9_000),
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(replay.code(), Code::Ok, "{:?}", replay.end);
        assert_eq!(replay.final_transcripts(), whole.final_transcripts()[1..]);
        for (late, early) in replay.finals().iter().zip(&finals[1..]) {
            let shift = secs(&early.result_end_time) - secs(&late.result_end_time);
            assert!((shift - cut_secs).abs() < 1e-6, "{shift} vs {cut_secs}");
            for (a, b) in late.alternatives[0]
                .words
                .iter()
                .zip(&early.alternatives[0].words)
            {
                assert!((secs(&b.start_time) - secs(&a.start_time) - cut_secs).abs() < 1e-6);
            }
        }
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// 8 kHz MULAW is recognised exactly too.
#[tokio::test]
async fn mulaw_8k_is_exact() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let audio = synth::encode(TEXT, 8_000, SynthEncoding::Mulaw);
        let setup = Setup {
            encoding: AudioEncoding::Mulaw,
            rate: 8_000,
            ..Setup::default()
        };
        let outcome = run_call(
            &mut client,
            config_request(&setup),
            fixed_chunks(&audio, 800),
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(outcome.code(), Code::Ok, "{:?}", outcome.end);
        assert_eq!(
            outcome.final_transcripts(),
            synth::expected_transcripts(TEXT)
        );
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// Half-closing in the middle of an utterance flushes it, word in progress included, then OK.
#[tokio::test]
async fn half_close_flushes_the_word_in_progress() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let encoded =
            synth::encode_with_timeline("first. hello world", 16_000, SynthEncoding::Linear16);
        // Stop after the "wor" of "world": three of its five letters.
        let world = &encoded.words[2];
        let cut = world.start_sample + 3 * 640 - 160;
        let outcome = run_call(
            &mut client,
            config_request(&Setup::default()),
            fixed_chunks(&encoded.audio[..cut as usize * 2], 3_200),
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(outcome.code(), Code::Ok, "{:?}", outcome.end);
        assert_eq!(outcome.final_transcripts(), vec!["first", "hello wor"]);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// `single_utterance`: the first final comes with END_OF_SINGLE_UTTERANCE, then the call ends OK
/// without hearing the rest.
#[tokio::test]
async fn single_utterance_ends_after_the_first_final() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let audio = synth::encode(TEXT, 16_000, SynthEncoding::Linear16);
        let setup = Setup {
            single_utterance: true,
            ..Setup::default()
        };
        let outcome = run_call(
            &mut client,
            config_request(&setup),
            fixed_chunks(&audio, 3_200),
            Pace::Burst,
            false,
        )
        .await;
        assert_eq!(outcome.code(), Code::Ok, "{:?}", outcome.end);
        assert_eq!(outcome.final_transcripts(), vec!["the quick brown fox"]);
        let last_two: Vec<_> = outcome.responses.iter().rev().take(2).collect();
        assert!(last_two[0].results[0].is_final);
        assert_eq!(
            last_two[1].speech_event_type,
            SpeechEventType::EndOfSingleUtterance as i32
        );
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// Encodings the synthetic recogniser does not decode are accepted and yield no words.
#[tokio::test]
async fn compressed_encodings_are_accepted_without_words() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let setup = Setup {
            encoding: AudioEncoding::OggOpus,
            rate: 48_000,
            ..Setup::default()
        };
        let outcome = run_call(
            &mut client,
            config_request(&setup),
            vec![vec![7; 400]; 5],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(outcome.code(), Code::Ok, "{:?}", outcome.end);
        assert!(outcome.responses.is_empty());
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

// ───────────────────────────── faults ─────────────────────────────

/// Each stream fails with the code its fault drew, by the request that carried its audio past the
/// drawn amount; the draws follow the seeded schedule.
#[tokio::test]
async fn status_faults_follow_the_seeded_schedule() {
    within(async {
        let faults = FaultConfig {
            every: Some(Duration::from_millis(800)),
            kinds: FaultKind::parse_list("INTERNAL,RESOURCE_EXHAUSTED,UNAVAILABLE")
                .expect("valid fault list"),
            seed: Some(5),
        };
        let mut schedule = FaultSchedule::new(&faults);
        let emulator = start(EmulatorConfig {
            faults,
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        let audio = synth::encode(TEXT, 16_000, SynthEncoding::Linear16);
        let audio_secs = audio.len() as f64 / 32_000.0;
        for stream in 0..4 {
            let planned = schedule.next_fault().expect("faults are on");
            let after = planned.after_audio.as_secs_f64();
            assert!(after < audio_secs, "seed gives a fault within the audio");
            let before = emulator.stats().audio_bytes;
            let outcome = run_call(
                &mut client,
                config_request(&Setup::default()),
                fixed_chunks(&audio, 3_200),
                Pace::Burst,
                false,
            )
            .await;
            let FaultKind::Status(code) = planned.kind else {
                panic!("only status faults configured");
            };
            assert_eq!(outcome.code(), code, "stream {stream}");
            let received = (emulator.stats().audio_bytes - before) as f64 / 32_000.0;
            assert!(
                received > after && received - 0.1 <= after,
                "stream {stream}: failed after {received} s of audio, planned {after} s"
            );
            for result in outcome.finals() {
                assert!(secs(&result.result_end_time) <= after);
            }
        }
        assert_eq!(emulator.stats().faults_injected, 4);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// `drop` cuts the TCP connection: every stream on it fails, and the channel reconnects for the
/// next call.
#[tokio::test]
async fn drop_fault_fails_every_stream_on_the_connection() {
    within(async {
        let faults = FaultConfig {
            every: Some(Duration::from_millis(300)),
            kinds: vec![FaultKind::Drop],
            seed: Some(1),
        };
        let mut schedule = FaultSchedule::new(&faults);
        let emulator = start(EmulatorConfig {
            faults,
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        // Two idle streams (no audio: their faults never trigger), then one that talks.
        let idle_a = open_call(&mut client, config_request(&Setup::default()))
            .await
            .expect("stream opens");
        let idle_b = open_call(&mut client, config_request(&Setup::default()))
            .await
            .expect("stream opens");
        // Draws go to streams in opening order: the talker opens third.
        let talker_fault = (0..3)
            .filter_map(|_| schedule.next_fault())
            .last()
            .expect("faults are on");
        let audio = synth::encode(TEXT, 16_000, SynthEncoding::Linear16);
        assert!(talker_fault.after_audio.as_secs_f64() < audio.len() as f64 / 32_000.0);
        let talker = run_call(
            &mut client,
            config_request(&Setup::default()),
            fixed_chunks(&audio, 3_200),
            Pace::Burst,
            false,
        )
        .await;
        let (a, b) = tokio::join!(drain(idle_a.responses), drain(idle_b.responses));
        // tonic reports a lost connection as UNKNOWN ("transport error", "h2 protocol error");
        // UNAVAILABLE is what other stacks say. Either way: not a status the server sent.
        for outcome in [&talker, &a, &b] {
            assert!(
                matches!(outcome.code(), Code::Unknown | Code::Unavailable),
                "{:?}",
                outcome.end
            );
        }
        drop((idle_a.requests, idle_b.requests));
        let stats = emulator.stats();
        assert_eq!(stats.connections_cut, 1);
        assert_eq!(stats.faults_injected, 1);
        // The channel reconnects; a short call on the new connection succeeds (no audio: no fault).
        let again = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(again.code(), Code::Ok, "{:?}", again.end);
        assert_eq!(emulator.stats().connections_accepted, 2);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// For `refuse_streams_for` after the start, new streams get UNAVAILABLE; afterwards they work.
#[tokio::test]
async fn streams_are_refused_after_start() {
    within(async {
        let started = Instant::now();
        let emulator = start(EmulatorConfig {
            refuse_streams_for: Duration::from_millis(600),
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        let refused = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(refused.code(), Code::Unavailable);
        assert_eq!(refused.message(), "The service is currently unavailable.");
        tokio::time::sleep_until((started + Duration::from_millis(700)).into()).await;
        let accepted = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(accepted.code(), Code::Ok, "{:?}", accepted.end);
        assert_eq!(emulator.stats().streams_refused, 1);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// An outage window: a stream open at its start fails with UNAVAILABLE, new streams are refused
/// during it, and streams work again after it.
#[tokio::test]
async fn outage_fails_open_streams_and_refuses_new_ones() {
    within(async {
        let emulator = start(EmulatorConfig {
            outage: Some(Outage {
                after: Duration::from_millis(500),
                duration: Duration::from_millis(600),
            }),
            ..EmulatorConfig::default()
        })
        .await;
        let started = Instant::now();
        let mut client = client(&emulator).await;
        let open = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 3_200]; 30],
            Pace::Every(Duration::from_millis(100)),
            false,
        )
        .await;
        let failed_at = started.elapsed();
        assert_eq!(open.code(), Code::Unavailable, "{:?}", open.end);
        assert!(
            failed_at >= Duration::from_millis(450) && failed_at < Duration::from_millis(1_000),
            "failed at {failed_at:?}"
        );
        let during = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(during.code(), Code::Unavailable);
        tokio::time::sleep_until((started + Duration::from_millis(1_300)).into()).await;
        let after = run_call(
            &mut client,
            config_request(&Setup::default()),
            vec![vec![0; 3_200]],
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(after.code(), Code::Ok, "{:?}", after.end);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// `response_delay` holds every response back.
#[tokio::test]
async fn responses_are_delayed() {
    within(async {
        let emulator = start(EmulatorConfig {
            response_delay: Duration::from_millis(400),
            ..EmulatorConfig::default()
        })
        .await;
        let mut client = client(&emulator).await;
        let audio = synth::encode("hi.", 16_000, SynthEncoding::Linear16);
        let mut call = open_call(&mut client, config_request(&Setup::default()))
            .await
            .expect("call opens");
        let sent = Instant::now();
        call.requests
            .send(audio_request(audio))
            .await
            .expect("send audio");
        let first = call
            .responses
            .message()
            .await
            .expect("a response")
            .expect("not the end");
        let waited = sent.elapsed();
        assert!(first.results[0].is_final);
        assert!(waited >= Duration::from_millis(400), "after {waited:?}");
        assert_eq!(call.finish().await.code(), Code::Ok);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

// ───────────────────────────── lifecycle ─────────────────────────────

/// Shutdown ends open streams with UNAVAILABLE and returns.
#[tokio::test]
async fn shutdown_ends_open_streams() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let call = open_call(&mut client, config_request(&Setup::default()))
            .await
            .expect("call opens");
        let shutdown = tokio::spawn(emulator.shutdown());
        let outcome = drain(call.responses).await;
        assert_eq!(outcome.code(), Code::Unavailable, "{:?}", outcome.end);
        drop(call.requests);
        shutdown
            .await
            .expect("shutdown task joins")
            .expect("clean shutdown");
    })
    .await;
}

/// `spawn` works inside an actix System (how `voxgate serve` embeds the emulator).
#[actix_rt::test]
async fn runs_inside_an_actix_system() {
    within(async {
        let emulator = start(EmulatorConfig::default()).await;
        let mut client = client(&emulator).await;
        let audio = synth::encode("inside actix", 16_000, SynthEncoding::Linear16);
        let outcome = run_call(
            &mut client,
            config_request(&Setup::default()),
            fixed_chunks(&audio, 3_200),
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(outcome.final_transcripts(), vec!["inside actix"]);
        emulator.shutdown().await.expect("clean shutdown");
    })
    .await;
}

// ───────────────────────────── real speech (--recognizer pocketsphinx) ─────────────────────────────

/// `--recognizer pocketsphinx`: the local engine answers with Google's responses — interims while
/// the speech goes on, the final "go forward ten meters" with word times inside the audio — and a
/// second stream opened meanwhile is served by the same single worker (streams share the engine's
/// workers; none holds one for its lifetime).
#[cfg(feature = "local")]
#[tokio::test]
async fn pocketsphinx_recognises_real_speech_and_shares_its_worker() {
    use voxgate_actors::settings::LocalSettings;
    use voxgate_emulator::RecognizerKind;

    let path = "/usr/share/pocketsphinx/test/data/goforward.raw";
    let audio = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (install the Debian package pocketsphinx-testdata)")
    });
    let emulator = start(EmulatorConfig {
        recognizer: RecognizerKind::PocketSphinx(LocalSettings {
            workers: 1,
            ..LocalSettings::default()
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let mut client = client(&emulator).await;
    let setup = Setup {
        interim: true,
        word_times: true,
        ..Setup::default()
    };
    within(async {
        let mut first = open_call(&mut client, config_request(&setup))
            .await
            .expect("the first stream is accepted");
        let (head, tail) = audio.split_at(48_000);
        for chunk in head.chunks(3_200) {
            first
                .requests
                .send(audio_request(chunk.to_vec()))
                .await
                .expect("send audio");
        }
        let interim = first.responses.message().await.expect("an interim result");
        assert!(
            interim.is_some_and(|r| r.results.iter().any(|r| !r.is_final)),
            "interim while speaking"
        );

        let second = run_call(
            &mut client,
            config_request(&setup),
            fixed_chunks(&audio, 3_200),
            Pace::Burst,
            true,
        )
        .await;
        assert_eq!(second.code(), Code::Ok, "{second:?}");
        assert_eq!(
            second.final_transcripts().join(" "),
            "go forward ten meters"
        );

        for chunk in tail.chunks(3_200) {
            first
                .requests
                .send(audio_request(chunk.to_vec()))
                .await
                .expect("send audio");
        }
        let outcome = first.finish().await;
        assert_eq!(outcome.code(), Code::Ok, "{outcome:?}");
        assert_eq!(
            outcome.final_transcripts().join(" "),
            "go forward ten meters"
        );
        let audio_secs = audio.len() as f64 / 32_000.0;
        for result in outcome.finals() {
            assert!(secs(&result.result_end_time) <= audio_secs + 0.01);
            let words = &result.alternatives[0].words;
            assert_eq!(words.len(), 4, "{words:?}");
            let mut previous = 0.0;
            for w in words {
                let (start, end) = (secs(&w.start_time), secs(&w.end_time));
                assert!(
                    start >= previous && end > start && end <= audio_secs,
                    "{w:?}"
                );
                previous = end;
            }
        }
    })
    .await;
}
