//! The mux between a session and its channels' pipelines, with probes as the pipelines.

use std::cell::RefCell;
use std::time::Duration;

use super::*;
use crate::audio::{AudioFormat, Encoding};
use crate::testing::{start_config, Probe, ProbeLog};

const WAIT: Duration = Duration::from_secs(5);

/// Pipelines that are probes: each `start` records its links and returns a probe's handle.
#[derive(Default)]
struct ProbePipelines {
    started: RefCell<Vec<(SessionLinks, ProbeLog)>>,
}

impl PipelineFactory for ProbePipelines {
    fn honoured(&self) -> crate::protocol::Honoured {
        crate::protocol::Honoured::GOOGLE_V2
    }

    fn start(&self, _: Arc<str>, _: Arc<StartConfig>, links: SessionLinks) -> PipelineHandle {
        let (probe, log) = Probe::start_new();
        self.started.borrow_mut().push((links, log));
        PipelineHandle {
            audio: probe.clone().recipient(),
            finalize: probe.clone().recipient(),
            end: probe.clone().recipient(),
            stop: probe.recipient(),
        }
    }
}

fn result(text: &str) -> Transcript {
    Transcript {
        is_final: true,
        transcript: text.into(),
        confidence: 1.0,
        stability: 0.0,
        start_ms: 0,
        end_ms: 100,
        words: Vec::new(),
        language_code: "en-US".into(),
    }
}

/// A two-channel mux over probe pipelines for `encoding`; the session is a probe too.
fn two_channels(
    factory: &ProbePipelines,
    encoding: Encoding,
    sample_rate_hz: u32,
) -> (
    Option<(PipelineHandle, Recipient<ChannelAudioIn>)>,
    ProbeLog,
) {
    let (session, session_log) = Probe::start_new();
    let config = Arc::new(StartConfig {
        format: AudioFormat {
            encoding,
            sample_rate_hz,
        },
        ..start_config()
    });
    let started = start(
        factory,
        2,
        Arc::from("s"),
        config,
        Probe::session_links(&session),
        session.recipient(),
    );
    (started, session_log)
}

#[test]
fn interleaved_frames_split_by_sample() {
    let (runs, rest) = deinterleave(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 2, 2);
    assert_eq!(runs, vec![vec![1, 2, 5, 6], vec![3, 4, 7, 8]]);
    assert_eq!(rest, &[9]);
    let (runs, rest) = deinterleave(&[1, 2, 3], 2, 1);
    assert_eq!(runs, vec![vec![1], vec![2]]);
    assert_eq!(rest, &[3]);
}

/// Audio reaches its channel (split, or routed), controls reach every channel, results come
/// back tagged, and the session hears `finished` once, after the last channel.
#[actix_rt::test]
async fn the_mux_splits_routes_tags_and_joins() {
    let factory = ProbePipelines::default();
    let (started, session_log) = two_channels(&factory, Encoding::Mulaw, 8_000);
    let Some((handle, channel_audio)) = started else {
        panic!("MULAW can be split");
    };
    let started = factory.started.borrow().clone();
    assert_eq!(started.len(), 2);
    handle.audio.do_send(AudioIn {
        data: Bytes::from_static(&[10, 20, 11]),
        audio_id: Some("a1".into()),
    });
    handle.audio.do_send(AudioIn {
        data: Bytes::from_static(&[21]),
        audio_id: None,
    });
    channel_audio.do_send(ChannelAudioIn {
        channel: 1,
        data: Bytes::from_static(&[99]),
    });
    channel_audio.do_send(ChannelAudioIn {
        channel: 7,
        data: Bytes::from_static(&[1]),
    });
    handle.end.do_send(EndOfAudio);
    let (links0, log0) = &started[0];
    let (links1, log1) = &started[1];
    log0.wait_count::<EndOfAudio>(1, WAIT).await;
    log1.wait_count::<EndOfAudio>(1, WAIT).await;
    let bytes = |log: &ProbeLog| -> Vec<u8> {
        log.all::<AudioIn>()
            .iter()
            .flat_map(|a| a.data.to_vec())
            .collect()
    };
    assert_eq!(bytes(log0), vec![10, 11]);
    assert_eq!(bytes(log1), vec![20, 21, 99]);
    assert_eq!(log0.all::<AudioIn>()[0].audio_id.as_deref(), Some("a1"));
    assert!(log1.all::<AudioIn>().iter().all(|a| a.audio_id.is_none()));

    links1.transcripts.do_send(result("right"));
    links0.transcripts.do_send(result("left"));
    links0.finished.do_send(PipelineFinished {
        summary: PipelineSummary {
            results: 1,
            restarts: 2,
            billed_ms: 0,
        },
    });
    let tagged = session_log.wait_count::<ChannelTranscript>(2, WAIT).await;
    let tags: Vec<(usize, &str)> = tagged
        .iter()
        .map(|t| (t.channel, t.transcript.transcript.as_str()))
        .collect();
    assert_eq!(tags, [(1, "right"), (0, "left")]);
    assert!(
        session_log.all::<PipelineFinished>().is_empty(),
        "channel 1 is not done"
    );
    links1.finished.do_send(PipelineFinished {
        summary: PipelineSummary {
            results: 1,
            restarts: 0,
            billed_ms: 0,
        },
    });
    let finished = session_log.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(
        finished[0].summary,
        PipelineSummary {
            results: 2,
            restarts: 2,
            billed_ms: 0,
        }
    );
}

#[actix_rt::test]
async fn compressed_audio_cannot_be_split() {
    let factory = ProbePipelines::default();
    let (started, _) = two_channels(&factory, Encoding::Flac, 16_000);
    assert!(started.is_none());
    assert!(factory.started.borrow().is_empty());
}
