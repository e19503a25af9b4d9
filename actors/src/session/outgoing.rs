//! The write side of one connection: how many bytes of server messages are waiting for the
//! client, so that a client which does not read what it is sent (a slow consumer) is noticed and
//! closed while the memory it holds is bounded. (What the messages say is the dialect's:
//! `crate::protocol::dialect`.)
//!
//! Why a wrapper is needed: `actix-web-actors` queues every message the session writes and hands
//! them, encoded, as one chunk to the HTTP connection, which appends the chunk to its write buffer
//! whatever its size. [`MeteredBody`] sits between the two: it takes what the context encodes and
//! gives the connection at most [`SLICE`] bytes at a time, so what the connection has not taken is
//! held here, where it is counted. The session adds the exact size of each frame it writes to the
//! [`OutgoingMeter`] and the body counts what the connection took: the difference is the backlog.
//!
//! A client that reads nothing at all eventually stops the connection from polling the body (its
//! write buffer is full) and with it the session's context; that case is the kernel's to end
//! (`TCP_USER_TIMEOUT`, set by the server on every connection).

use std::cell::Cell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

/// The most the connection is given at once.
pub(super) const SLICE: usize = 16 * 1024;

/// Bytes written by the session and bytes taken by the connection.
#[derive(Debug, Default)]
pub(super) struct OutgoingMeter {
    /// Every frame the session wrote, encoded size.
    queued: Cell<u64>,
    /// What the connection took from the body.
    taken: Cell<u64>,
}

impl OutgoingMeter {
    /// The session wrote a frame of `bytes` (see [`frame_len`]).
    pub(super) fn queue(&self, bytes: u64) {
        self.queued.set(self.queued.get() + bytes);
    }

    fn took(&self, bytes: usize) {
        self.taken.set(self.taken.get() + bytes as u64);
    }

    /// Bytes written by the session that the connection has not taken yet.
    pub(super) fn waiting(&self) -> u64 {
        self.queued.get().saturating_sub(self.taken.get())
    }
}

/// The encoded size of a server frame (unmasked) with a payload of `payload` bytes.
pub(super) fn frame_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    (header + payload) as u64
}

/// The response body of a WebSocket session: the context's encoded frames, handed on in slices.
pub(super) struct MeteredBody<S> {
    /// The context's output; polling it also runs the session actor.
    inner: Pin<Box<S>>,
    meter: Rc<OutgoingMeter>,
    /// Encoded frames the connection has not taken yet.
    held: VecDeque<Bytes>,
    /// The context has ended (the session stopped): end once `held` is empty.
    inner_done: bool,
}

impl<S> MeteredBody<S> {
    pub(super) fn new(inner: S, meter: Rc<OutgoingMeter>) -> MeteredBody<S> {
        MeteredBody {
            inner: Box::pin(inner),
            meter,
            held: VecDeque::new(),
            inner_done: false,
        }
    }
}

impl<S, E> Stream for MeteredBody<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.inner_done {
            // Always polled, even with output held: the session must keep running (timers,
            // pipeline messages) and decide for itself when the backlog is too large.
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if !chunk.is_empty() {
                        this.held.push_back(chunk);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.inner_done = true,
                Poll::Pending => {}
            }
        }
        if let Some(front) = this.held.front_mut() {
            let piece = if front.len() > SLICE {
                front.split_to(SLICE)
            } else {
                std::mem::take(front)
            };
            if front.is_empty() {
                this.held.pop_front();
            }
            this.meter.took(piece.len());
            return Poll::Ready(Some(Ok(piece)));
        }
        if this.inner_done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn frame_lengths_follow_the_websocket_header_sizes() {
        assert_eq!(frame_len(0), 2);
        assert_eq!(frame_len(125), 127);
        assert_eq!(frame_len(126), 130);
        assert_eq!(frame_len(65_535), 65_539);
        assert_eq!(frame_len(65_536), 65_546);
    }

    #[actix_rt::test]
    async fn the_body_hands_on_everything_in_slices_and_counts_it() {
        let meter = Rc::new(OutgoingMeter::default());
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from(vec![1u8; 40_000])),
            Ok(Bytes::from(vec![2u8; 10])),
        ];
        meter.queue(40_010);
        assert_eq!(meter.waiting(), 40_010);
        let body = MeteredBody::new(futures_util::stream::iter(chunks), meter.clone());
        let pieces: Vec<Bytes> = body.map(|p| p.unwrap_or_default()).collect().await;
        assert!(pieces.iter().all(|p| p.len() <= SLICE));
        let all: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(all.len(), 40_010);
        assert!(all[..40_000].iter().all(|b| *b == 1) && all[40_000..] == [2u8; 10]);
        assert_eq!(meter.waiting(), 0);
    }
}
