//! One session, several channels: a phone call's two tracks (Twilio, Telnyx), or a native client's
//! interleaved `channels: 2` audio. Each channel gets a pipeline of its own (audio buffer,
//! supervisor, upstream streams, restarts and replay), so the audio buffer, the supervisor and the
//! recognizers stay single-channel; a [`ChannelMux`] stands between them and the session:
//!
//! - down: interleaved [`AudioIn`] is split into the channels by sample; [`ChannelAudioIn`] goes
//!   to its channel; `finalize`, end of audio and stop go to every channel (one mailbox, so the
//!   order of audio and controls holds per channel);
//! - up: each channel's results come back as [`ChannelTranscript`] (tagged with the channel);
//!   warnings and errors as they are; acknowledgements as the furthest any channel got; and the
//!   session hears `PipelineFinished` once every channel has finished, with their summaries
//!   added up.
//!
//! A channel that never gets audio opens no upstream stream (streams open for audio), so a track
//! that stays silent costs nothing but its two idle actors.

use std::sync::Arc;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::messages::{
    AudioAcked, AudioIn, ChannelAudioIn, ChannelTranscript, EndOfAudio, Finalize, PipelineError,
    PipelineFinished, PipelineHandle, PipelineSummary, PipelineWarning, SessionLinks, StopPipeline,
    Transcript, VoiceActivity,
};
use crate::pipeline::PipelineFactory;
use crate::protocol::StartConfig;

/// The most channels one session may have.
pub const MAX_CHANNELS: usize = 8;

/// What a channel's pipeline reported, tagged with the channel by its [`ChannelTag`].
#[derive(Message)]
#[rtype(result = "()")]
struct FromChannel {
    channel: usize,
    report: Report,
}

enum Report {
    Transcript(Transcript),
    Acked(AudioAcked),
    Warning(PipelineWarning),
    Error(PipelineError),
    Finished(PipelineSummary),
}

/// Stands in for the session in one channel's pipeline: tags what it hears with the channel.
struct ChannelTag {
    channel: usize,
    mux: Addr<ChannelMux>,
}

impl Actor for ChannelTag {
    type Context = Context<Self>;
}

impl ChannelTag {
    fn forward(&self, report: Report) {
        self.mux.do_send(FromChannel {
            channel: self.channel,
            report,
        });
    }
}

macro_rules! tag_handler {
    ($message:ty, $report:expr) => {
        impl Handler<$message> for ChannelTag {
            type Result = ();

            fn handle(&mut self, message: $message, _: &mut Context<Self>) {
                self.forward(($report)(message));
            }
        }
    };
}

tag_handler!(Transcript, Report::Transcript);
tag_handler!(AudioAcked, Report::Acked);
tag_handler!(PipelineWarning, Report::Warning);
tag_handler!(PipelineError, Report::Error);
tag_handler!(PipelineFinished, |f: PipelineFinished| Report::Finished(
    f.summary
));

/// A multichannel session never asks for voice-activity events (the session refuses
/// `voice_activity_events` with `channels` > 1), so none are expected; any that came would have
/// no channel to name.
impl Handler<VoiceActivity> for ChannelTag {
    type Result = ();

    fn handle(&mut self, _: VoiceActivity, _: &mut Context<Self>) {}
}

/// Between the session and its channels' pipelines (see the module doc).
pub struct ChannelMux {
    channels: Vec<PipelineHandle>,
    /// Bytes of one sample of one channel (2 for LINEAR16, 1 for MULAW and ALAW).
    sample_bytes: usize,
    /// Interleaved bytes short of a whole frame (a sample of every channel), kept for the next
    /// chunk.
    partial: BytesMut,
    session: SessionLinks,
    transcripts: Recipient<ChannelTranscript>,
    /// The furthest acknowledgement sent to the session.
    acked_ms: u64,
    /// Each channel's summary, once it finished.
    finished: Vec<Option<PipelineSummary>>,
}

impl Actor for ChannelMux {
    type Context = Context<Self>;
}

/// Starts `channels` pipelines from `factory` and the mux in front of them, on the current
/// arbiter. The session drives the returned handle as it would a single pipeline, sends
/// per-channel audio to the returned recipient, and receives results on `transcripts`. `None`
/// when the encoding cannot be split into channels (only the uncompressed ones can).
pub fn start(
    factory: &dyn PipelineFactory,
    channels: usize,
    session_id: Arc<str>,
    config: Arc<StartConfig>,
    session: SessionLinks,
    transcripts: Recipient<ChannelTranscript>,
) -> Option<(PipelineHandle, Recipient<ChannelAudioIn>)> {
    let sample_bytes = config.format.encoding.sample_bytes()?;
    let context = Context::<ChannelMux>::new();
    let mux = context.address();
    let pipelines = (0..channels)
        .map(|channel| {
            let tag = ChannelTag {
                channel,
                mux: mux.clone(),
            }
            .start();
            let links = SessionLinks {
                transcripts: tag.clone().recipient(),
                voice_activity: tag.clone().recipient(),
                acks: tag.clone().recipient(),
                warnings: tag.clone().recipient(),
                errors: tag.clone().recipient(),
                finished: tag.recipient(),
            };
            factory.start(session_id.clone(), config.clone(), links)
        })
        .collect();
    context.run(ChannelMux {
        channels: pipelines,
        sample_bytes,
        partial: BytesMut::new(),
        session,
        transcripts,
        acked_ms: 0,
        finished: vec![None; channels],
    });
    let handle = PipelineHandle {
        audio: mux.clone().recipient(),
        finalize: mux.clone().recipient(),
        end: mux.clone().recipient(),
        stop: mux.clone().recipient(),
    };
    Some((handle, mux.recipient()))
}

/// Splits whole interleaved frames of `data` into `channels` byte runs (a frame = one sample of
/// every channel, `sample_bytes` each); returns the runs and the bytes short of a frame.
pub fn deinterleave(data: &[u8], channels: usize, sample_bytes: usize) -> (Vec<Vec<u8>>, &[u8]) {
    let frame = channels * sample_bytes;
    let whole = data.len() - data.len() % frame;
    let mut runs = vec![Vec::with_capacity(whole / channels.max(1)); channels];
    for chunk in data[..whole].chunks_exact(frame) {
        for (channel, sample) in chunk.chunks_exact(sample_bytes).enumerate() {
            runs[channel].extend_from_slice(sample);
        }
    }
    (runs, &data[whole..])
}

impl Handler<AudioIn> for ChannelMux {
    type Result = ();

    fn handle(&mut self, audio: AudioIn, _: &mut Context<Self>) {
        self.partial.extend_from_slice(&audio.data);
        let data = self.partial.split().freeze();
        let (runs, rest) = deinterleave(&data, self.channels.len(), self.sample_bytes);
        self.partial.extend_from_slice(rest);
        for (channel, (pipeline, run)) in self.channels.iter().zip(runs).enumerate() {
            if run.is_empty() {
                continue;
            }
            // The client's audio_id is acknowledged through channel 0.
            let audio_id = if channel == 0 {
                audio.audio_id.clone()
            } else {
                None
            };
            pipeline.audio.do_send(AudioIn {
                data: Bytes::from(run),
                audio_id,
            });
        }
    }
}

impl Handler<ChannelAudioIn> for ChannelMux {
    type Result = ();

    fn handle(&mut self, audio: ChannelAudioIn, _: &mut Context<Self>) {
        if let Some(pipeline) = self.channels.get(audio.channel) {
            pipeline.audio.do_send(AudioIn {
                data: audio.data,
                audio_id: None,
            });
        }
    }
}

impl Handler<Finalize> for ChannelMux {
    type Result = ();

    fn handle(&mut self, _: Finalize, _: &mut Context<Self>) {
        for pipeline in &self.channels {
            pipeline.finalize.do_send(Finalize);
        }
    }
}

impl Handler<EndOfAudio> for ChannelMux {
    type Result = ();

    fn handle(&mut self, _: EndOfAudio, _: &mut Context<Self>) {
        for pipeline in &self.channels {
            pipeline.end.do_send(EndOfAudio);
        }
    }
}

impl Handler<StopPipeline> for ChannelMux {
    type Result = ();

    fn handle(&mut self, _: StopPipeline, ctx: &mut Context<Self>) {
        for pipeline in &self.channels {
            pipeline.stop.do_send(StopPipeline);
        }
        ctx.stop();
    }
}

impl Handler<FromChannel> for ChannelMux {
    type Result = ();

    fn handle(&mut self, from: FromChannel, ctx: &mut Context<Self>) {
        let channel = from.channel;
        match from.report {
            Report::Transcript(transcript) => self.transcripts.do_send(ChannelTranscript {
                channel,
                transcript,
            }),
            Report::Acked(ack) => {
                if ack.audio_ms > self.acked_ms || ack.audio_id.is_some() {
                    self.acked_ms = self.acked_ms.max(ack.audio_ms);
                    self.session.acks.do_send(AudioAcked {
                        audio_ms: self.acked_ms,
                        audio_id: ack.audio_id,
                    });
                }
            }
            Report::Warning(warning) => self.session.warnings.do_send(warning),
            Report::Error(error) => self.session.errors.do_send(error),
            Report::Finished(summary) => {
                if let Some(slot) = self.finished.get_mut(channel) {
                    *slot = Some(summary);
                }
                if self.finished.iter().all(Option::is_some) {
                    let summary = self.finished.iter().flatten().fold(
                        PipelineSummary::default(),
                        |total, s| PipelineSummary {
                            results: total.results + s.results,
                            restarts: total.restarts + s.restarts,
                            billed_ms: total.billed_ms + s.billed_ms,
                        },
                    );
                    self.session.finished.do_send(PipelineFinished { summary });
                    ctx.stop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
