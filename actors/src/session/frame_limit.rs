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
//! Every frame (or marker) is admitted through the session's [`ReadGate`] before its first byte
//! reaches the codec: that bounds how far the codec reads ahead of the session, and lets the
//! session pause reading (pacing). A frame is only ever held back whole, at its header, so the
//! codec never waits for the rest of a frame the guard is holding.
//!
//! A read error of the connection ends the stream (the client is gone); it is logged here, so
//! every `ProtocolError::Io` the session sees comes from the codec's own checks (invalid UTF-8).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::Stream;

use super::read_gate::ReadGate;

/// Length of the nonce that opens a marker frame's payload.
pub(super) const NONCE_LEN: usize = 16;
/// Nonce + declared length (u64, big-endian).
const MARKER_PAYLOAD_LEN: usize = NONCE_LEN + 8;
/// Longest frame header: 2 bytes + 8 bytes of extended length + 4 bytes of mask.
pub(super) const MAX_HEADER_LEN: usize = 14;
/// A marker frame: 2 bytes of header, a 4-byte mask, the payload.
const MARKER_LEN: u64 = 6 + MARKER_PAYLOAD_LEN as u64;

/// Where the guard is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reading a frame header (its bytes are held until it is complete).
    Header,
    /// The header is complete (in `header`); the frame waits to be admitted by the gate.
    Admit { length: u64 },
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
    /// Admits each frame (read-ahead budget, pacing).
    gate: ReadGate,
    /// For log lines.
    session_id: Arc<str>,
    position: Position,
    /// The bytes of an incomplete header (held back so a marker can replace the whole frame).
    header: Vec<u8>,
    /// Pieces ready to hand to the codec, in order (slices of the input where possible).
    ready: VecDeque<Bytes>,
    /// What is left of the last chunk read from the connection (while a frame waits).
    input: Bytes,
    /// The connection ended or failed: nothing more after `ready`.
    ended: bool,
}

impl<S> FrameLimit<S> {
    pub(super) fn new(
        inner: S,
        max_payload: usize,
        nonce: [u8; NONCE_LEN],
        gate: ReadGate,
        session_id: Arc<str>,
    ) -> Self {
        FrameLimit {
            inner,
            max_payload: u64::try_from(max_payload).unwrap_or(u64::MAX),
            nonce,
            gate,
            session_id,
            position: Position::Header,
            header: Vec::with_capacity(MAX_HEADER_LEN),
            ready: VecDeque::new(),
            input: Bytes::new(),
            ended: false,
        }
    }

    /// Turns as much of `input` as the gate allows into pieces for the codec. Pending when a
    /// frame waits for the gate (which then wakes the task).
    fn process(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.position {
                Position::Admit { length } => {
                    let discard = length > self.max_payload;
                    let size = if discard {
                        MARKER_LEN
                    } else {
                        self.header.len() as u64 + length
                    };
                    if self.gate.admit(size, cx).is_pending() {
                        return Poll::Pending;
                    }
                    if discard {
                        self.ready.push_back(self.marker(length));
                    } else {
                        self.ready.push_back(Bytes::copy_from_slice(&self.header));
                    }
                    self.header.clear();
                    self.position = if length > 0 {
                        Position::Payload {
                            remaining: length,
                            discard,
                        }
                    } else {
                        Position::Header
                    };
                }
                _ if self.input.is_empty() => return Poll::Ready(()),
                Position::Payload { remaining, discard } => {
                    let left = self.input.len();
                    let take = usize::try_from(remaining).map_or(left, |r| r.min(left));
                    let piece = self.input.split_to(take);
                    if !discard {
                        self.ready.push_back(piece);
                    }
                    // `take` ≤ `remaining`, so this cannot underflow.
                    let remaining = remaining - take as u64;
                    self.position = if remaining == 0 {
                        Position::Header
                    } else {
                        Position::Payload { remaining, discard }
                    };
                }
                Position::Header => {
                    self.header.push(self.input[0]);
                    self.input.advance(1);
                    if let Some(length) = declared_length(&self.header) {
                        self.position = Position::Admit { length };
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
            let progress = this.process(cx);
            if let Some(piece) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(piece)));
            }
            if progress.is_pending() {
                return Poll::Pending;
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.input = chunk,
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

    /// A guard over `chunks` whose gate never holds a frame back (a budget no input reaches).
    fn guard<E>(chunks: Vec<Result<Bytes, E>>, max: usize) -> impl Stream<Item = Result<Bytes, E>>
    where
        E: std::fmt::Display,
    {
        let gate = ReadGate::new(u64::MAX);
        FrameLimit::new(
            futures_util::stream::iter(chunks),
            max,
            NONCE,
            gate,
            "t".into(),
        )
    }

    /// Feeds `input` in chunks of `chunk` bytes through a guard with `max` and returns its output.
    async fn run(input: &[u8], chunk: usize, max: usize) -> Vec<u8> {
        let chunks: Vec<Result<Bytes, String>> = input
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let pieces: Vec<Result<Bytes, String>> = guard(chunks, max).collect().await;
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
        let pieces: Vec<Result<Bytes, String>> = guard(chunks, 100).collect().await;
        let bytes: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.as_ref().map(|b| b.to_vec()).unwrap_or_default())
            .collect();
        assert_eq!(bytes, first);
        assert!(pieces.iter().all(|p| p.is_ok()));
    }

    /// The guard hands a frame to the codec only once the gate admits it, and never more than
    /// the budget ahead of the session (one frame always fits); held frames are not lost.
    #[actix_rt::test]
    async fn frames_wait_at_their_header_for_the_gate() {
        let mut input = Vec::new();
        for i in 0..10u8 {
            input.extend(frame(0x2, &[i; 20])); // 26 bytes each
        }
        let chunks: Vec<Result<Bytes, String>> = vec![Ok(Bytes::from(input.clone()))];
        let gate = ReadGate::new(60);
        let mut guard = FrameLimit::new(
            futures_util::stream::iter(chunks),
            1_000,
            NONCE,
            gate.clone(),
            "t".into(),
        );
        let mut out = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut received = 0;
        loop {
            match Pin::new(&mut guard).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(piece))) => {
                    out.extend_from_slice(&piece);
                    assert!(gate.in_flight() <= 60, "read ahead within the budget");
                }
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    // What the codec has is two whole frames; the session receives one.
                    assert_eq!(out.len() % 26, 0, "held back at a frame boundary");
                    assert_eq!(out.len() / 26 - received, 2);
                    gate.frame_received();
                    received += 1;
                }
            }
        }
        assert_eq!(out, input);
    }

    mod properties {
        //! Property tests over arbitrary frame sequences and chunkings ("fuzzing" on stable, a
        //! few hundred cases each): the guard's output is exactly the input with every oversized
        //! frame replaced by its marker, whatever the chunking and the read-ahead budget; garbage
        //! never panics it.

        use super::*;
        use proptest::prelude::*;

        /// A frame with any first byte (FIN, RSV, opcode), masked or not, of `len` bytes.
        fn raw_frame(first: u8, masked: bool, len: usize) -> Vec<u8> {
            let mut out = vec![first];
            let mask_bit = if masked { 0x80 } else { 0 };
            match len {
                n if n < 126 => out.push(mask_bit | n as u8),
                n if n <= 0xffff => {
                    out.push(mask_bit | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(mask_bit | 127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            if masked {
                out.extend_from_slice(&[9, 8, 7, 6]);
            }
            out.extend((0..len).map(|i| i as u8));
            out
        }

        fn expected_marker(declared: u64) -> Vec<u8> {
            let mut out = vec![0x89, 0x80 | MARKER_PAYLOAD_LEN as u8, 0, 0, 0, 0];
            out.extend_from_slice(&NONCE);
            out.extend_from_slice(&declared.to_be_bytes());
            out
        }

        /// Runs the guard over `input` cut at `cuts`, with a gate of `budget` that a simulated
        /// session drains one frame whenever the guard waits.
        fn run_gated(input: &[u8], cuts: &[usize], max: usize, budget: u64) -> Vec<u8> {
            let mut chunks: Vec<Result<Bytes, String>> = Vec::new();
            let mut at = 0;
            for cut in cuts {
                let end = (at + cut).min(input.len());
                chunks.push(Ok(Bytes::copy_from_slice(&input[at..end])));
                at = end;
            }
            chunks.push(Ok(Bytes::copy_from_slice(&input[at..])));
            let gate = ReadGate::new(budget);
            let mut guard = FrameLimit::new(
                futures_util::stream::iter(chunks),
                max,
                NONCE,
                gate.clone(),
                "t".into(),
            );
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut out = Vec::new();
            loop {
                match Pin::new(&mut guard).poll_next(&mut cx) {
                    Poll::Ready(Some(Ok(piece))) => out.extend_from_slice(&piece),
                    Poll::Ready(Some(Err(e))) => panic!("{e}"),
                    Poll::Ready(None) => return out,
                    Poll::Pending => gate.frame_received(),
                }
            }
        }

        fn frame_spec() -> impl Strategy<Value = (u8, bool, usize)> {
            (
                any::<u8>(),
                any::<bool>(),
                prop_oneof![0usize..130, 120usize..300, 60_000usize..70_000],
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn output_is_input_with_oversized_frames_replaced(
                frames in prop::collection::vec(frame_spec(), 0..12),
                max in 125usize..70_000,
                cuts in prop::collection::vec(1usize..5_000, 0..20),
                budget in 1u64..200_000,
            ) {
                let mut input = Vec::new();
                let mut expected = Vec::new();
                for (first, masked, len) in frames {
                    let bytes = raw_frame(first, masked, len);
                    input.extend_from_slice(&bytes);
                    if len > max {
                        expected.extend(expected_marker(len as u64));
                    } else {
                        expected.extend(bytes);
                    }
                }
                prop_assert_eq!(run_gated(&input, &cuts, max, budget), expected);
            }

            #[test]
            fn garbage_never_panics_and_grows_by_markers_only(
                input in prop::collection::vec(any::<u8>(), 0..4_000),
                cuts in prop::collection::vec(1usize..500, 0..10),
                max in 0usize..2_000,
            ) {
                let out = run_gated(&input, &cuts, max, 1_000);
                // Input bytes pass or are dropped; a marker (30 bytes) stands for a header of at
                // least 2.
                prop_assert!(out.len() <= input.len() * 15);
            }
        }

        /// Kept from the properties: a 64-bit length with the top bit set is a marker, not an
        /// overflow.
        #[actix_rt::test]
        async fn regression_top_bit_length_is_a_marker() {
            let mut input = vec![0x82, 0x80 | 127];
            input.extend_from_slice(&u64::MAX.to_be_bytes());
            input.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
            let out = run(&input, 3, 100).await;
            assert_eq!(out, expected_marker(u64::MAX));
        }
    }
}
