//! RIFF/WAVE for the command-line client (PCM 16-bit or μ-law, mono): a whole file in memory
//! ([`parse_wav`]), or the header at the start of a stream ([`read_wav_header`]) whose data
//! follows for as long as the writer (`arecord`, `sox`) goes on.

use std::io::Read;

use voxgate_actors::audio::{AudioFormat, Encoding};

/// Audio read from a file, ready to stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFile {
    pub format: AudioFormat,
    pub data: Vec<u8>,
}

/// Parses a WAV file. Only what the gateway can stream losslessly is accepted: mono 16-bit PCM
/// (LINEAR16) or mono μ-law (MULAW); anything else is an error that says what was found.
pub fn parse_wav(bytes: &[u8]) -> Result<AudioFile, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut pos = 12;
    let mut format: Option<AudioFormat> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => format = Some(parse_fmt(body)?),
            b"data" => {
                let format = format.ok_or("WAV data chunk before its fmt chunk")?;
                return Ok(AudioFile {
                    format,
                    data: body.to_vec(),
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        pos = body_start.saturating_add(size).saturating_add(size & 1);
    }
    Err("WAV file has no data chunk".into())
}

/// Reads a WAV header from `reader`, whose first four bytes (`RIFF`) were read already, up to
/// and including the `data` chunk's header: what follows is the audio. The data chunk's size is
/// not trusted (a live writer does not know it).
pub fn read_wav_header(reader: &mut impl Read) -> Result<AudioFormat, String> {
    let mut riff = [0u8; 8];
    reader
        .read_exact(&mut riff)
        .map_err(|e| format!("WAV header: {e}"))?;
    if &riff[4..8] != b"WAVE" {
        return Err("not a RIFF/WAVE stream".into());
    }
    let mut format = None;
    loop {
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(|e| format!("WAV header: no data chunk ({e})"))?;
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as u64;
        if &header[0..4] == b"data" {
            return format.ok_or_else(|| "WAV data chunk before its fmt chunk".to_string());
        }
        // Chunks are padded to an even size.
        let padded = size.saturating_add(size & 1);
        if &header[0..4] == b"fmt " {
            if padded > 1_024 {
                return Err(format!("WAV fmt chunk of {size} bytes"));
            }
            let mut body = vec![0u8; padded as usize];
            reader
                .read_exact(&mut body)
                .map_err(|e| format!("WAV fmt chunk: {e}"))?;
            format = Some(parse_fmt(&body)?);
        } else {
            let skipped = std::io::copy(&mut reader.by_ref().take(padded), &mut std::io::sink())
                .map_err(|e| format!("WAV header: {e}"))?;
            if skipped < padded {
                return Err("WAV header: no data chunk".into());
            }
        }
    }
}

fn parse_fmt(body: &[u8]) -> Result<AudioFormat, String> {
    if body.len() < 16 {
        return Err("WAV fmt chunk is truncated".into());
    }
    let tag = u16::from_le_bytes([body[0], body[1]]);
    let channels = u16::from_le_bytes([body[2], body[3]]);
    let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let bits = u16::from_le_bytes([body[14], body[15]]);
    if channels != 1 {
        return Err(format!(
            "WAV has {channels} channels; voxgate streams mono audio (convert with: sox in.wav -c 1 out.wav)"
        ));
    }
    let encoding = match (tag, bits) {
        (1, 16) => Encoding::Linear16,
        (7, 8) => Encoding::Mulaw,
        (6, 8) => Encoding::Alaw,
        _ => {
            return Err(format!(
                "WAV format tag {tag} with {bits}-bit samples is not supported; use 16-bit PCM, 8-bit μ-law or 8-bit A-law"
            ))
        }
    };
    Ok(AudioFormat {
        encoding,
        sample_rate_hz: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(bits / 8)).to_le_bytes());
        v.extend_from_slice(&(bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00"); // odd-sized chunk, padded
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_pcm16_mono() {
        let f = parse_wav(&wav(1, 1, 16_000, 16, &[1, 2, 3, 4]));
        assert_eq!(
            f,
            Ok(AudioFile {
                format: AudioFormat {
                    encoding: Encoding::Linear16,
                    sample_rate_hz: 16_000
                },
                data: vec![1, 2, 3, 4]
            })
        );
    }

    #[test]
    fn reads_mulaw_8k() {
        let f = parse_wav(&wav(7, 1, 8_000, 8, &[0xff; 3])).map(|f| f.format.encoding);
        assert_eq!(f, Ok(Encoding::Mulaw));
    }

    /// A stream's header is read up to the data, which stays in the reader.
    #[test]
    fn reads_a_header_from_a_stream() {
        let bytes = wav(1, 1, 8_000, 16, &[5, 6, 7, 8]);
        let mut reader = &bytes[4..];
        let format = read_wav_header(&mut reader);
        assert_eq!(
            format,
            Ok(AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: 8_000
            })
        );
        assert_eq!(reader, &[5, 6, 7, 8]);
        let stereo = wav(1, 2, 8_000, 16, &[]);
        assert!(read_wav_header(&mut &stereo[4..]).is_err_and(|e| e.contains("channels")));
        assert!(read_wav_header(&mut &stereo[4..30]).is_err());
    }

    #[test]
    fn rejects_stereo_float_and_garbage_with_reasons() {
        assert!(parse_wav(&wav(1, 2, 16_000, 16, &[])).is_err_and(|e| e.contains("channels")));
        assert!(parse_wav(&wav(3, 1, 16_000, 32, &[])).is_err_and(|e| e.contains("format tag 3")));
        assert!(parse_wav(b"hello").is_err());
        let mut truncated = wav(1, 1, 16_000, 16, &[0; 8]);
        truncated.truncate(30);
        assert!(parse_wav(&truncated).is_err());
    }
}
