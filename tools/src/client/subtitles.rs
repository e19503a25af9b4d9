//! Subtitles from the final results (`voxgate stream --srt` / `--vtt`): one cue per final, timed
//! on the session clock (ms since the first audio byte).

/// One final result.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// The subtitle formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Srt,
    Vtt,
}

/// The cues as an SRT or WebVTT document.
pub fn render(cues: &[Cue], format: Format) -> String {
    let mut out = match format {
        Format::Srt => String::new(),
        Format::Vtt => "WEBVTT\n\n".to_string(),
    };
    for (i, cue) in cues.iter().enumerate() {
        // An engine may report an end before the start for an empty-ish result: never a
        // negative cue.
        let end = cue.end_ms.max(cue.start_ms);
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(cue.start_ms, format),
            timestamp(end, format),
            cue.text.replace("-->", "->")
        ));
    }
    out
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT).
fn timestamp(ms: u64, format: Format) -> String {
    let separator = match format {
        Format::Srt => ',',
        Format::Vtt => '.',
    };
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues() -> Vec<Cue> {
        vec![
            Cue {
                start_ms: 1_200,
                end_ms: 2_300,
                text: "hello world".into(),
            },
            Cue {
                start_ms: 3_723_004,
                end_ms: 3_723_000,
                text: "a --> b".into(),
            },
        ]
    }

    #[test]
    fn srt_and_vtt_cues() {
        assert_eq!(
            render(&cues(), Format::Srt),
            "1\n00:00:01,200 --> 00:00:02,300\nhello world\n\n\
             2\n01:02:03,004 --> 01:02:03,004\na -> b\n\n"
        );
        assert_eq!(
            render(&cues(), Format::Vtt),
            "WEBVTT\n\n1\n00:00:01.200 --> 00:00:02.300\nhello world\n\n\
             2\n01:02:03.004 --> 01:02:03.004\na -> b\n\n"
        );
        assert_eq!(render(&[], Format::Vtt), "WEBVTT\n\n");
    }
}
