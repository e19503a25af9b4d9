//! The bench's own minimal WebSocket client (RFC 6455): the opening handshake, client frames, and
//! a parser of server frames.
//!
//! Why not tokio-tungstenite (which `voxgate stream` uses): a load generator sharing two cores with
//! the server it measures must cost next to nothing per frame. Client frames must be masked; the
//! RFC lets the masking key be any 32 bits, and with the key 0 a masked frame's payload is the
//! payload itself — so every audio frame of the run is encoded once, at start, and each send is a
//! single `write` of shared bytes: no copy, no allocation, no masking pass. (The server still
//! unmasks every frame, exactly as for any other key.)

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opcodes.
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
const CONTINUATION: u8 = 0x0;

/// Largest server message the bench accepts (transcripts are a few hundred bytes).
const MAX_SERVER_MESSAGE: usize = 1 << 20;
/// Largest HTTP response head to the upgrade.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A parsed `ws://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `host:port` as written (the `Host` header).
    pub authority: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Path and query, at least `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses a `ws://` URL whose host is an IP address or a name that resolves (no TLS: the bench
    /// measures the gateway, not a TLS terminator in front of it).
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("--url {url}: must start with ws://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("--url {url}: no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .map_err(|e| format!("--url {url}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url {url}: {with_port} resolves to nothing"))?;
        Ok(WsUrl {
            authority: authority.to_string(),
            addr,
            path: path.to_string(),
        })
    }
}

/// Appends a masked client frame (key 0, so the payload is written as is).
pub fn client_frame(opcode: u8, payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 14);
    out.put_u8(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.put_u8(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(0x80 | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(0x80 | 127);
        out.put_u64(len as u64);
    }
    out.put_u32(0);
    out.put_slice(payload);
}

/// One client frame as shared bytes.
pub fn client_frame_bytes(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    client_frame(opcode, payload, &mut out);
    out.freeze()
}

/// A Close frame with a status code.
pub fn close_frame(code: u16) -> Bytes {
    client_frame_bytes(CLOSE, &code.to_be_bytes())
}

/// A message from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// Status code (1005 when absent) and reason.
    Close(u16, String),
}

/// Takes one complete server frame off the front of `buf`, if there is one.
pub fn parse_server_frame(buf: &mut BytesMut) -> Result<Option<ServerFrame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b1 & 0x80 != 0 {
        return Err("the server sent a masked frame".to_string());
    }
    let (len, header) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(raw);
            (usize::try_from(len).unwrap_or(usize::MAX), 10)
        }
        n => (usize::from(n), 2),
    };
    if len > MAX_SERVER_MESSAGE {
        return Err(format!("the server sent a frame of {len} bytes"));
    }
    if buf.len() < header + len {
        buf.reserve(header + len - buf.len());
        return Ok(None);
    }
    if b0 & 0x80 == 0 || b0 & 0x0F == CONTINUATION {
        return Err("the server sent a fragmented message".to_string());
    }
    buf.advance(header);
    let payload = buf.split_to(len).freeze();
    Ok(Some(match b0 & 0x0F {
        TEXT => ServerFrame::Text(payload),
        BINARY => ServerFrame::Binary(payload),
        PING => ServerFrame::Ping(payload),
        PONG => ServerFrame::Pong,
        CLOSE => {
            let code = if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            };
            let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
            ServerFrame::Close(code, reason)
        }
        other => return Err(format!("the server sent opcode {other:#x}")),
    }))
}

/// Connects and performs the opening handshake. Returns the socket and any bytes the server sent
/// after its response head.
pub async fn connect(url: &WsUrl, key_seed: u64) -> Result<(TcpStream, BytesMut), String> {
    let mut socket = TcpStream::connect(url.addr)
        .await
        .map_err(|e| format!("connect: {}", io_kind(&e)))?;
    socket
        .set_nodelay(true)
        .map_err(|e| format!("connect: {}", io_kind(&e)))?;
    // Any 16 bytes will do for the key; different per connection as the RFC asks.
    let mut raw_key = [0u8; 16];
    raw_key[..8].copy_from_slice(&key_seed.to_le_bytes());
    raw_key[8..].copy_from_slice(&(!key_seed).to_le_bytes());
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw_key);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        url.path, url.authority
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("handshake: {}", io_kind(&e)))?;
    let mut buf = BytesMut::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err("handshake: response head too long".to_string());
        }
        let n = socket
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("handshake: {}", io_kind(&e)))?;
        if n == 0 {
            return Err("handshake: connection closed".to_string());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(format!("handshake: HTTP {status}"));
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accepted = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == accept
        })
    });
    if !accepted {
        return Err("handshake: wrong Sec-WebSocket-Accept".to_string());
    }
    buf.advance(head_end);
    Ok((socket, buf))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A short name of an I/O error (used as a failure reason, so that failures group well).
pub fn io_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?} (os error {code})", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}

/// Backlog beyond which a connection counts as not read by the server (about 3 s of 16 kHz
/// LINEAR16 audio on top of the socket's own buffer).
const MAX_BACKLOG: usize = 96 * 1024;

/// The sending half of a session's socket, shared by the pacer (audio) and the session's reader
/// (pongs, the Close reply). Writes never wait: what the socket does not take at once is kept in a
/// backlog, written before anything else at the next send or by [`WsWriter::flush`].
pub struct WsWriter {
    /// The socket's sending half.
    half: tokio::net::tcp::OwnedWriteHalf,
    /// Bytes the socket did not take yet, in order.
    backlog: std::sync::Mutex<BytesMut>,
}

impl WsWriter {
    pub fn new(half: tokio::net::tcp::OwnedWriteHalf) -> WsWriter {
        WsWriter {
            half,
            backlog: std::sync::Mutex::new(BytesMut::new()),
        }
    }

    /// Writes `data` now, or queues it behind what is still waiting.
    pub fn send(&self, data: &[u8]) -> Result<(), String> {
        let mut backlog = match self.backlog.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.drain(&mut backlog)?;
        let mut rest = data;
        if backlog.is_empty() {
            match self.half.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("send: {}", io_kind(&e))),
            }
        }
        if !rest.is_empty() {
            backlog.extend_from_slice(rest);
            if backlog.len() > MAX_BACKLOG {
                return Err("the server is not reading (send backlog full)".to_string());
            }
        }
        Ok(())
    }

    /// Writes as much of the backlog as the socket takes now.
    fn drain(&self, backlog: &mut BytesMut) -> Result<(), String> {
        while !backlog.is_empty() {
            match self.half.try_write(backlog) {
                Ok(0) => return Err("send: connection closed".to_string()),
                Ok(n) => backlog.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("send: {}", io_kind(&e))),
            }
        }
        Ok(())
    }

    /// Waits until the backlog is written.
    pub async fn flush(&self) -> Result<(), String> {
        loop {
            {
                let mut backlog = match self.backlog.lock() {
                    Ok(b) => b,
                    Err(poisoned) => poisoned.into_inner(),
                };
                self.drain(&mut backlog)?;
                if backlog.is_empty() {
                    return Ok(());
                }
            }
            self.half
                .writable()
                .await
                .map_err(|e| format!("send: {}", io_kind(&e)))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of each length class round-trip through the server-frame parser (unmasked copy).
    #[test]
    fn frames_of_every_length_class_parse() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![7u8; len];
            let masked = client_frame_bytes(BINARY, &payload);
            // A server frame is the same without the mask bit and key.
            let mut server = BytesMut::new();
            server.put_u8(masked[0]);
            server.put_u8(masked[1] & 0x7F);
            let header = masked.len() - len - 4;
            server.put_slice(&masked[2..header]);
            server.put_slice(&payload);
            let mut partial = BytesMut::from(&server[..server.len() - 1]);
            assert_eq!(parse_server_frame(&mut partial), Ok(None), "len {len}");
            assert_eq!(
                parse_server_frame(&mut server),
                Ok(Some(ServerFrame::Binary(Bytes::from(payload)))),
                "len {len}"
            );
            assert!(server.is_empty());
        }
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut buf =
            BytesMut::from(&[0x88u8, 0x08, 0x03, 0xE8, b'c', b'l', b'o', b's', b'e', b'd'][..]);
        assert_eq!(
            parse_server_frame(&mut buf),
            Ok(Some(ServerFrame::Close(1000, "closed".to_string())))
        );
    }

    #[test]
    fn urls_need_ws_and_a_host() {
        let url = match WsUrl::parse("ws://127.0.0.1:9/v1/listen?x=1") {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(url.path, "/v1/listen?x=1");
        assert_eq!(url.addr.port(), 9);
        assert!(WsUrl::parse("http://127.0.0.1:9/").is_err());
        assert!(WsUrl::parse("ws:///x").is_err());
    }
}
