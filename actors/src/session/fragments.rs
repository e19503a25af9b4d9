//! Reassembly of a message the client sends in fragments (a first frame, continuation frames, a
//! last one) into the one text or binary message it is, bounded as a whole message would be:
//! `max_frame_bytes` for any message, `max_json_bytes` for text.
//!
//! Pure: it is fed the codec's fragments and answers with a whole message, nothing yet, or the
//! [`Rejection`] the session sends; the session does the sending and the closing.

use actix_http::ws::Item;
use bytes::{Bytes, BytesMut};

use crate::protocol::{ErrorCode, Rejection};

/// A message put back together from its fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reassembled {
    Text(String),
    Binary(Bytes),
}

/// The message being reassembled, between its first fragment and its last.
struct Partial {
    is_text: bool,
    data: BytesMut,
}

/// Puts fragmented messages back together, one at a time (the WebSocket protocol does not
/// interleave them).
pub(super) struct Reassembler {
    /// `[session] max_frame_bytes`: the most a whole message may have.
    max_frame_bytes: usize,
    /// `[session] max_json_bytes`: the most a whole text message may have.
    max_json_bytes: usize,
    /// `Some` from a first fragment to the last (or a rejection, or [`Reassembler::reset`]).
    partial: Option<Partial>,
}

impl Reassembler {
    pub(super) fn new(max_frame_bytes: usize, max_json_bytes: usize) -> Reassembler {
        Reassembler {
            max_frame_bytes,
            max_json_bytes,
            partial: None,
        }
    }

    /// Drops whatever was being reassembled (the session refused the connection's input).
    pub(super) fn reset(&mut self) {
        self.partial = None;
    }

    /// Adds a fragment: the whole message once `item` is the last fragment, `Ok(None)` while more
    /// are to come, or why the message is refused (it is then dropped).
    pub(super) fn push(&mut self, item: Item) -> Result<Option<Reassembled>, Rejection> {
        let (start, is_text, piece, last) = match item {
            Item::FirstText(b) => (true, true, b, false),
            Item::FirstBinary(b) => (true, false, b, false),
            Item::Continue(b) => (false, false, b, false),
            Item::Last(b) => (false, false, b, true),
        };
        if start {
            self.partial = Some(Partial {
                is_text,
                data: BytesMut::new(),
            });
        }
        let Some(partial) = self.partial.as_mut() else {
            // The codec enforces the sequence; without a first fragment there is nothing to add to.
            return Ok(None);
        };
        let total = partial.data.len() + piece.len();
        if total > self.max_frame_bytes {
            self.partial = None;
            return Err(Rejection::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "a fragmented message exceeds max_frame_bytes ({} bytes)",
                    self.max_frame_bytes
                ),
            ));
        }
        if partial.is_text && total > self.max_json_bytes {
            self.partial = None;
            return Err(Rejection::new(
                ErrorCode::JsonTooLarge,
                format!(
                    "a fragmented JSON message exceeds max_json_bytes ({} bytes)",
                    self.max_json_bytes
                ),
            ));
        }
        partial.data.extend_from_slice(&piece);
        if !last {
            return Ok(None);
        }
        let Some(Partial { is_text, data }) = self.partial.take() else {
            return Ok(None);
        };
        if !is_text {
            return Ok(Some(Reassembled::Binary(data.freeze())));
        }
        match String::from_utf8(Vec::from(data)) {
            Ok(text) => Ok(Some(Reassembled::Text(text))),
            Err(_) => Err(Rejection::new(
                ErrorCode::InvalidJson,
                "a text message is not UTF-8",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn code(result: Result<Option<Reassembled>, Rejection>) -> Option<ErrorCode> {
        result.err().map(|r| r.code)
    }

    #[test]
    fn text_and_binary_messages_come_back_whole_at_their_last_fragment() {
        let mut r = Reassembler::new(100, 50);
        assert_eq!(r.push(Item::FirstText(b(br#"{"type":"#))), Ok(None));
        assert_eq!(r.push(Item::Continue(b(br#""keep"#))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(br#"alive"}"#))),
            Ok(Some(Reassembled::Text(r#"{"type":"keepalive"}"#.into())))
        );
        assert_eq!(r.push(Item::FirstBinary(b(&[1, 2]))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(&[3]))),
            Ok(Some(Reassembled::Binary(b(&[1, 2, 3]))))
        );
    }

    #[test]
    fn limits_are_inclusive_and_apply_to_the_whole_message() {
        let mut r = Reassembler::new(6, 4);
        assert_eq!(r.push(Item::FirstBinary(b(b"abc"))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(b"def"))),
            Ok(Some(Reassembled::Binary(b(b"abcdef"))))
        );
        assert_eq!(r.push(Item::FirstBinary(b(b"abc"))), Ok(None));
        let refused = r.push(Item::Continue(b(b"defg")));
        assert_eq!(code(refused.clone()), Some(ErrorCode::FrameTooLarge));
        assert!(refused
            .err()
            .is_some_and(|e| e.message.contains("max_frame_bytes (6 bytes)")));

        assert_eq!(r.push(Item::FirstText(b(b"ab"))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(b"cd"))),
            Ok(Some(Reassembled::Text("abcd".into())))
        );
        assert_eq!(r.push(Item::FirstText(b(b"ab"))), Ok(None));
        let refused = r.push(Item::Continue(b(b"cde")));
        assert_eq!(code(refused.clone()), Some(ErrorCode::JsonTooLarge));
        assert!(refused
            .err()
            .is_some_and(|e| e.message.contains("max_json_bytes (4 bytes)")));
    }

    #[test]
    fn a_refused_message_is_dropped_and_its_later_fragments_ignored() {
        let mut r = Reassembler::new(4, 4);
        assert_eq!(r.push(Item::FirstBinary(b(b"abc"))), Ok(None));
        assert_eq!(
            code(r.push(Item::Continue(b(b"de")))),
            Some(ErrorCode::FrameTooLarge)
        );
        assert_eq!(r.push(Item::Last(b(b"f"))), Ok(None));
        assert_eq!(r.push(Item::FirstBinary(b(b"ab"))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(b"cd"))),
            Ok(Some(Reassembled::Binary(b(b"abcd"))))
        );
    }

    #[test]
    fn reset_drops_the_message_in_progress() {
        let mut r = Reassembler::new(100, 100);
        assert_eq!(r.push(Item::FirstText(b(b"{"))), Ok(None));
        r.reset();
        assert_eq!(r.push(Item::Last(b(b"}"))), Ok(None));
    }

    #[test]
    fn text_that_is_not_utf8_is_invalid_json() {
        let mut r = Reassembler::new(100, 100);
        assert_eq!(r.push(Item::FirstText(b(&[0xe2, 0x82]))), Ok(None));
        assert_eq!(
            code(r.push(Item::Last(b(&[0x28])))),
            Some(ErrorCode::InvalidJson)
        );
        // A character split between fragments is whole in the message.
        assert_eq!(r.push(Item::FirstText(b(&[0xe2, 0x82]))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(&[0xac]))),
            Ok(Some(Reassembled::Text("€".into())))
        );
    }

    #[test]
    fn the_first_fragment_restarts_reassembly() {
        let mut r = Reassembler::new(100, 100);
        assert_eq!(r.push(Item::FirstBinary(b(b"old"))), Ok(None));
        assert_eq!(r.push(Item::FirstText(b(b"n"))), Ok(None));
        assert_eq!(
            r.push(Item::Last(b(b"ew"))),
            Ok(Some(Reassembled::Text("new".into())))
        );
    }
}
