//! A local engine fed directly, without the gateway: a whole recording converted to 16 kHz as a
//! stream's audio is, cut into the segments a stream cuts, and each segment decoded by one of the
//! engine's decoders — what streaming the recording through `voxgate serve` must give word for
//! word (Moonshine and PocketSphinx alike).

use voxgate_actors::audio::AudioFormat;
use voxgate_actors::recognizer::local::resample::AudioConverter;
use voxgate_actors::recognizer::local::scheduler::SegmentDecoder;
use voxgate_actors::recognizer::local::segment_stream::{final_text, shape_text, StreamSettings};
use voxgate_actors::recognizer::local::segmenter::Segmenter;

/// The finals' text for `bytes` of audio in `format`, as the server shapes it without
/// punctuation, joined by spaces.
pub fn direct_text(
    decoder: &mut dyn SegmentDecoder,
    settings: &StreamSettings,
    format: AudioFormat,
    bytes: &[u8],
) -> String {
    let converter = if settings.fold_narrowband {
        AudioConverter::new(format)
    } else {
        AudioConverter::without_folding(format)
    };
    let mut converter = converter.unwrap_or_else(|e| panic!("{e}"));
    let mut wide = Vec::new();
    converter.push(bytes, &mut wide);
    converter.finish(&mut wide);
    let floats: Vec<f32> = wide.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    let mut segmenter = Segmenter::new(settings.segmenter);
    let mut segments = segmenter.push(&floats);
    segments.extend(segmenter.finish());
    segments
        .iter()
        .map(|s| {
            let decoded = decoder.decode(&s.samples).unwrap_or_else(|e| panic!("{e}"));
            final_text(shape_text(decoded.text, false), s.samples.len())
        })
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
