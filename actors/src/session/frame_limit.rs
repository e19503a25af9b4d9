//! A guard on the raw bytes of a WebSocket connection that enforces `[session] max_frame_bytes`
//! from the frame *header*, before the payload arrives.
//!
//! Why: the actix WebSocket codec checks its maximum frame size only once the whole frame is
//! buffered, so a client declaring a 4 GB frame would make the server buffer it first. And the
//! codec's `Overflow` error would not keep its place among the frames before it (the decoder reads
//! everything available before decoding). This guard sits between the connection's byte stream and
//! the codec, parses each frame header (2–14 bytes; the payload stays masked and is not looked at),
//! and replaces a frame whose declared length is over the limit by a *marker*: a masked ping frame
//! whose payload is a per-session random nonce followed by the declared length. The session
//! recognises the nonce (a client cannot guess it), reports `frame_too_large` in order with the
//! frames before it, and the guard discards the oversized payload as it arrives, so the
//! connection can still complete the closing handshake afterwards.
//!
//! A read error of the connection ends the stream (the client is gone); it is logged here, so
//! every `ProtocolError::Io` the session sees comes from the codec's own checks (invalid UTF-8).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;

/// Length of the nonce that opens a marker frame's payload.
pub(super) const NONCE_LEN: usize = 16;
/// Nonce + declared length (u64, big-endian).
const MARKER_PAYLOAD_LEN: usize = NONCE_LEN + 8;
/// Longest frame header: 2 bytes + 8 bytes of extended length + 4 bytes of mask.
const MAX_HEADER_LEN: usize = 14;

/// Where the guard is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reading a frame header (its bytes are held until it is complete).
    Header,
    /// Inside a payload: this many bytes still belong to the current frame.
    Payload { remaining: u64, discard: bool },
}

/// The byte stream of one connection, with oversized frames replaced by marker frames.
pub(super) struct FrameLimit<S> {
    inner: S,
    /// `[session] max_frame_bytes`.
    max_payload: u64,
    /// The session's secret that identifies marker frames.
    nonce: [u8; NONCE_LEN],
    /// For log lines.
    session_id: Arc<str>,
    position: Position,
    /// The bytes of an incomplete header (held back so a marker can replace the whole frame).
    header: Vec<u8>,
    /// Pieces ready to hand to the codec, in order (slices of the input where possible).
    ready: VecDeque<Bytes>,
    /// The connection ended or failed: nothing more after `ready`.
    ended: bool,
}

impl<S> FrameLimit<S> {
    pub(super) fn new(
        inner: S,
        max_payload: usize,
        nonce: [u8; NONCE_LEN],
        session_id: Arc<str>,
    ) -> Self {
        FrameLimit {
            inner,
            max_payload: u64::try_from(max_payload).unwrap_or(u64::MAX),
            nonce,
            session_id,
            position: Position::Header,
            header: Vec::with_capacity(MAX_HEADER_LEN),
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// Splits one chunk of the connection into pieces for the codec.
    fn process(&mut self, chunk: Bytes) {
        let mut at = 0;
        while at < chunk.len() {
            match self.position {
                Position::Payload { remaining, discard } => {
                    let left = chunk.len() - at;
                    let take = usize::try_from(remaining).map_or(left, |r| r.min(left));
                    if !discard {
                        self.ready.push_back(chunk.slice(at..at + take));
                    }
                    at += take;
                    // `take` ≤ `remaining`, so this cannot underflow.
                    let remaining = remaining - take as u64;
                    self.position = if remaining == 0 {
                        Position::Header
                    } else {
                        Position::Payload { remaining, discard }
                    };
                }
                Position::Header => {
                    self.header.push(chunk[at]);
                    at += 1;
                    if let Some(length) = declared_length(&self.header) {
                        let discard = length > self.max_payload;
                        if discard {
                            self.ready.push_back(self.marker(length));
                        } else {
                            self.ready.push_back(Bytes::copy_from_slice(&self.header));
                        }
                        self.header.clear();
                        if length > 0 {
                            self.position = Position::Payload {
                                remaining: length,
                                discard,
                            };
                        }
                    }
                }
            }
        }
    }

    /// A masked (all-zero key: the payload reads as is) ping frame carrying the nonce and the
    /// declared length of the frame it replaces.
    fn marker(&self, declared: u64) -> Bytes {
        let mut frame = BytesMut::with_capacity(6 + MARKER_PAYLOAD_LEN);
        frame.put_u8(0x80 | 0x9); // FIN, opcode ping
        frame.put_u8(0x80 | MARKER_PAYLOAD_LEN as u8); // masked, length
        frame.put_slice(&[0, 0, 0, 0]);
        frame.put_slice(&self.nonce);
        frame.put_u64(declared);
        frame.freeze()
    }
}

/// The payload length a complete header declares, or `None` while more header bytes are needed.
fn declared_length(header: &[u8]) -> Option<u64> {
    if header.len() < 2 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let short = header[1] & 0x7f;
    let extended = match short {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let total = 2 + extended + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    Some(match short {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(bytes)
        }
        n => u64::from(n),
    })
}

/// If `payload` is a marker of this session's guard: the declared length of the frame it replaced.
pub(super) fn marker_length(payload: &[u8], nonce: &[u8; NONCE_LEN]) -> Option<u64> {
    if payload.len() != MARKER_PAYLOAD_LEN || &payload[..NONCE_LEN] != nonce {
        return None;
    }
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&payload[NONCE_LEN..]);
    Some(u64::from_be_bytes(bytes))
}

impl<S, E> Stream for FrameLimit<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(piece) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(piece)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.process(chunk),
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(session_id = %this.session_id, "connection read failed: {e}");
                    this.ended = true;
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    const NONCE: [u8; NONCE_LEN] = [7; NONCE_LEN];

    /// A masked client frame (mask key 1,2,3,4) with `payload`.
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ (i as u8 % 4 + 1)),
        );
        out
    }

    /// Feeds `input` in chunks of `chunk` bytes through a guard with `max` and returns its output.
    async fn run(input: &[u8], chunk: usize, max: usize) -> Vec<u8> {
        let chunks: Vec<Result<Bytes, String>> = input
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let guard = FrameLimit::new(futures_util::stream::iter(chunks), max, NONCE, "t".into());
        let pieces: Vec<Result<Bytes, String>> = guard.collect().await;
        pieces
            .into_iter()
            .flat_map(|p| p.map(|b| b.to_vec()).unwrap_or_default())
            .collect()
    }

    #[actix_rt::test]
    async fn frames_within_the_limit_pass_unchanged_whatever_the_chunking() {
        let mut input = frame(0x2, &[9; 300]);
        input.extend(frame(0x1, b"{\"type\":\"keepalive\"}"));
        input.extend(frame(0x2, &[5; 70_000]));
        input.extend(frame(0x8, &[]));
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            assert_eq!(
                run(&input, chunk, 70_000).await,
                input,
                "chunk size {chunk}"
            );
        }
    }

    #[actix_rt::test]
    async fn an_oversized_frame_becomes_a_marker_in_place_and_its_payload_is_dropped() {
        let before = frame(0x1, b"{\"type\":\"stop\"}");
        let after = frame(0x8, &[0x03, 0xe8]);
        for (big, max) in [(1_025usize, 1_024usize), (70_000, 1_024), (126, 125)] {
            let mut input = before.clone();
            input.extend(frame(0x2, &vec![1; big]));
            input.extend(after.clone());
            for chunk in [1, 5, 4096] {
                let out = run(&input, chunk, max).await;
                assert_eq!(&out[..before.len()], &before[..], "frames before are kept");
                let marker = &out[before.len()..out.len() - after.len()];
                assert_eq!(&marker[..2], &[0x89, 0x80 | 24], "a masked ping");
                assert_eq!(marker_length(&marker[6..], &NONCE), Some(big as u64));
                assert_eq!(
                    &out[out.len() - after.len()..],
                    &after[..],
                    "frames after are kept"
                );
            }
        }
    }

    #[actix_rt::test]
    async fn a_frame_of_exactly_the_limit_passes() {
        let input = frame(0x2, &[3; 2048]);
        assert_eq!(run(&input, 100, 2048).await, input);
    }

    #[test]
    fn markers_need_the_nonce() {
        let mut payload = [0u8; MARKER_PAYLOAD_LEN];
        payload[NONCE_LEN..].copy_from_slice(&5u64.to_be_bytes());
        assert_eq!(marker_length(&payload, &NONCE), None);
        payload[..NONCE_LEN].copy_from_slice(&NONCE);
        assert_eq!(marker_length(&payload, &NONCE), Some(5));
        assert_eq!(marker_length(&payload[1..], &NONCE), None);
    }

    #[actix_rt::test]
    async fn a_read_error_ends_the_stream_after_what_came_before() {
        let first = frame(0x2, &[1; 10]);
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::copy_from_slice(&first)),
            Err("reset".into()),
            Ok(Bytes::copy_from_slice(&first)),
        ];
        let guard = FrameLimit::new(futures_util::stream::iter(chunks), 100, NONCE, "t".into());
        let pieces: Vec<Result<Bytes, String>> = guard.collect().await;
        let bytes: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.as_ref().map(|b| b.to_vec()).unwrap_or_default())
            .collect();
        assert_eq!(bytes, first);
        assert!(pieces.iter().all(|p| p.is_ok()));
    }
}
