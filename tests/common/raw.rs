//! A WebSocket client at the byte level, for what a well-behaved library will not send: malformed,
//! truncated or oversized frames, floods written as fast as the socket takes them, connections
//! that stop reading or go silent. It reads the server's frames back (they are never masked).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use super::WAIT;

/// Opcodes.
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xa;

/// A client frame: FIN as given, masked (key 1,2,3,4) unless `masked` is false.
pub fn frame_with(opcode: u8, fin: bool, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
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
        let key = [1u8, 2, 3, 4];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A complete, masked client frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(opcode, true, true, payload)
}

/// The header of a masked frame that declares `length` bytes of payload (which may never come).
pub fn header_declaring(opcode: u8, length: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode, 0x80 | 127];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&[1, 2, 3, 4]);
    out
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    /// A Close frame's code and reason.
    pub fn close(&self) -> Option<(u16, String)> {
        if self.opcode != CLOSE || self.payload.len() < 2 {
            return None;
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        Some((
            code,
            String::from_utf8_lossy(&self.payload[2..]).to_string(),
        ))
    }
}

/// What reading got.
#[derive(Debug, PartialEq)]
pub enum Read {
    Frame(ServerFrame),
    /// The server closed (or reset) the connection.
    End,
    /// Nothing within the time given.
    Nothing,
}

pub struct RawClient {
    reader: OwnedReadHalf,
    /// `None` once a test took it to write from elsewhere.
    writer: Option<OwnedWriteHalf>,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and sends an upgrade request for `path` with `extra_headers` (each ending in
    /// `\r\n`); returns the client and the response head once it has arrived.
    pub async fn upgrade(addr: SocketAddr, path: &str, extra_headers: &str) -> (RawClient, String) {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient::upgrade_on(stream, addr, path, extra_headers).await
    }

    /// The same with a small receive buffer (a client whose kernel holds little unread data).
    pub async fn upgrade_small_buffer(addr: SocketAddr, recv_buffer: u32) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(recv_buffer)
            .expect("receive buffer size");
        let stream = socket.connect(addr).await.expect("connect");
        let (client, head) = RawClient::upgrade_on(stream, addr, "/v1/listen", "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client
    }

    async fn upgrade_on(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        extra_headers: &str,
    ) -> (RawClient, String) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra_headers}\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send upgrade");
        let (reader, writer) = stream.into_split();
        let mut client = RawClient {
            reader,
            writer: Some(writer),
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&client.buf[..end]).to_string();
                client.buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, client.reader.read(&mut chunk))
                .await
                .expect("upgrade response in time")
                .expect("read upgrade response");
            assert!(n > 0, "connection closed before the upgrade response");
            client.buf.extend_from_slice(&chunk[..n]);
        };
        (client, head)
    }

    /// An upgraded connection to `/v1/listen` (101 asserted).
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let (client, head) = RawClient::upgrade(addr, "/v1/listen", "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        assert!(self.try_write(bytes).await, "write to the server");
    }

    /// Writes, but a server that closed the connection meanwhile is not a failure.
    pub async fn try_write(&mut self, bytes: &[u8]) -> bool {
        match &mut self.writer {
            Some(writer) => writer.write_all(bytes).await.is_ok(),
            None => false,
        }
    }

    /// The write half, for writing from another task (the client then only reads).
    pub fn take_writer(&mut self) -> OwnedWriteHalf {
        self.writer.take().expect("the writer is still here")
    }

    /// Reads and throws away whatever the server sends (pongs to a ping flood, say) until `done`
    /// completes; its output.
    pub async fn discard_while<F: std::future::Future>(&mut self, done: F) -> F::Output {
        tokio::pin!(done);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut open = true;
        loop {
            tokio::select! {
                output = &mut done => return output,
                read = self.reader.read(&mut scratch), if open => {
                    open = matches!(read, Ok(n) if n > 0);
                }
            }
        }
    }

    /// The next frame from the server within `within`.
    pub async fn read(&mut self, within: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Read::Frame(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.reader.read(&mut chunk)).await {
                Err(_) => return Read::Nothing,
                Ok(Ok(0)) | Ok(Err(_)) => return Read::End,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next non-ping, non-pong frame.
    pub async fn next_frame(&mut self) -> Read {
        loop {
            match self.read(WAIT).await {
                Read::Frame(f) if f.opcode == PING || f.opcode == PONG => continue,
                other => return other,
            }
        }
    }

    /// The next frame must be a JSON `error` with `code`; then a Close with the code's close code;
    /// then the connection must end (once the client answered the Close).
    pub async fn expect_error(&mut self, code: voxgate_actors::protocol::ErrorCode) -> Value {
        let error = match self.next_frame().await {
            Read::Frame(f) if f.opcode == TEXT => f.json(),
            other => panic!("expected an error message, got {other:?}"),
        };
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code.as_str(), "{error}");
        if let Some(close) = code.close_code() {
            self.expect_close(close, code.as_str()).await;
        }
        error
    }

    /// The next frame must be a Close with `code` and `reason`; answers it and waits for the end.
    pub async fn expect_close(&mut self, code: u16, reason: &str) {
        match self.next_frame().await {
            Read::Frame(f) => assert_eq!(f.close(), Some((code, reason.to_string())), "{f:?}"),
            other => panic!("expected Close {code}, got {other:?}"),
        }
        let _ = self.try_write(&frame(CLOSE, &code.to_be_bytes())).await;
        self.expect_end().await;
    }

    /// The server ends the connection (frames still in flight are skipped).
    pub async fn expect_end(&mut self) {
        loop {
            match self.read(WAIT).await {
                Read::End => return,
                Read::Frame(_) => continue,
                Read::Nothing => panic!("the server did not end the connection"),
            }
        }
    }
}

/// A complete server frame at the start of `buf`, and its length.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (length, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < header + length {
        return None;
    }
    Some((
        ServerFrame {
            opcode,
            payload: buf[header..header + length].to_vec(),
        },
        header + length,
    ))
}
