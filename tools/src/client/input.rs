//! Where `voxgate stream` gets its audio: a WAV or raw file, or stdin (`arecord … |`,
//! `sox … -t raw - |`, `ffmpeg … -f s16le - |`). The audio comes as chunks of one frame through a
//! channel from a thread of its own, so a live pipe is sent as it arrives and a file as fast as
//! the sender asks.

use std::io::{IsTerminal, Read};
use std::path::Path;

use tokio::sync::mpsc;
use voxgate_actors::audio::AudioFormat;

use super::exit::Failure;
use super::wav::{parse_wav, read_wav_header};

/// Chunks read ahead of the sender.
const READ_AHEAD_CHUNKS: usize = 16;

/// Audio being read.
pub struct Input {
    pub format: AudioFormat,
    /// For messages: the file's name, or `stdin`.
    pub name: String,
    /// The length, when known (a file), for the progress line.
    pub total_ms: Option<u64>,
    /// One frame each (the last may be shorter); an `Err` ends the input with a read error.
    pub chunks: mpsc::Receiver<Result<Vec<u8>, String>>,
}

/// Opens `file` (`None` or `-`: stdin). Headerless audio is in `raw_format`; frames are
/// `frame_ms` long.
pub fn open(file: Option<&Path>, raw_format: AudioFormat, frame_ms: u64) -> Result<Input, Failure> {
    match file {
        Some(path) if path != Path::new("-") => open_file(path, raw_format, frame_ms),
        _ => open_stdin(raw_format, frame_ms),
    }
}

fn frame_bytes(format: AudioFormat, frame_ms: u64) -> usize {
    (format.ms_to_bytes(frame_ms) as usize).max(1)
}

fn open_file(path: &Path, raw_format: AudioFormat, frame_ms: u64) -> Result<Input, Failure> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Failure::Input(format!("{name}: {e}")))?;
    let (format, data) = if bytes.starts_with(b"RIFF") {
        let wav = parse_wav(&bytes).map_err(|e| Failure::Input(format!("{name}: {e}")))?;
        (wav.format, wav.data)
    } else {
        (raw_format, bytes)
    };
    if data.is_empty() {
        return Err(Failure::Input(format!("{name}: no audio in the file")));
    }
    let total_ms = Some(format.bytes_to_ms(data.len() as u64));
    let size = frame_bytes(format, frame_ms);
    let (tx, chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
    std::thread::spawn(move || {
        for chunk in data.chunks(size) {
            if tx.blocking_send(Ok(chunk.to_vec())).is_err() {
                return; // the sender stopped
            }
        }
    });
    Ok(Input {
        format,
        name,
        total_ms,
        chunks,
    })
}

fn open_stdin(raw_format: AudioFormat, frame_ms: u64) -> Result<Input, Failure> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::Usage(
            "no audio: give a file, or pipe audio into stdin (e.g. `arecord -f S16_LE -r 16000 \
             -c 1 -t wav | voxgate stream -`)"
                .into(),
        ));
    }
    let mut first = Vec::with_capacity(4);
    (&mut stdin)
        .take(4)
        .read_to_end(&mut first)
        .map_err(|e| Failure::Input(format!("stdin: {e}")))?;
    if first.is_empty() {
        return Err(Failure::Input("stdin: no audio (empty input)".into()));
    }
    // A WAV header says the format; anything else is headerless audio of --encoding/--rate.
    let (format, pending) = if first == b"RIFF" {
        let format =
            read_wav_header(&mut stdin).map_err(|e| Failure::Input(format!("stdin: {e}")))?;
        (format, Vec::new())
    } else {
        (raw_format, first)
    };
    let size = frame_bytes(format, frame_ms);
    let (tx, chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
    std::thread::spawn(move || read_frames(stdin, pending, size, tx));
    Ok(Input {
        format,
        name: "stdin".into(),
        total_ms: None,
        chunks,
    })
}

/// Reads `reader` to its end in chunks of `size` bytes (after `pending`), each sent as soon as
/// it is full.
fn read_frames(
    mut reader: impl Read,
    pending: Vec<u8>,
    size: usize,
    tx: mpsc::Sender<Result<Vec<u8>, String>>,
) {
    let mut chunk = pending;
    loop {
        let filled = chunk.len();
        chunk.resize(size.max(filled), 0);
        match reader.read(&mut chunk[filled..]) {
            Ok(0) => {
                chunk.truncate(filled);
                if !chunk.is_empty() {
                    let _ = tx.blocking_send(Ok(chunk));
                }
                return;
            }
            Ok(n) => {
                chunk.truncate(filled + n);
                if chunk.len() >= size && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => chunk.truncate(filled),
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("stdin: {e}")));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe's bytes come out in whole frames, in order, the rest last.
    #[test]
    fn frames_are_whole_and_in_order() {
        let bytes: Vec<u8> = (0..=9).collect();
        let (tx, mut rx) = mpsc::channel(16);
        read_frames(&bytes[1..], vec![0], 4, tx);
        let mut got = Vec::new();
        while let Ok(Ok(chunk)) = rx.try_recv() {
            got.push(chunk);
        }
        assert_eq!(got, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    }
}
