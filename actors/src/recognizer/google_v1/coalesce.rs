//! The socket under each HTTP/2 connection to Google, with its writes coalesced: audio frames of
//! the connection's streams (up to `streams_per_connection`, each sending a frame every 100 ms)
//! that are ready within `[google] write_coalesce_ms` of each other leave in one write.
//!
//! Why: h2 writes whatever it has each time its connection task runs, and the task runs once per
//! frame a stream queues — so at a few thousand sessions the gateway made one `writev` per audio
//! frame, about an eighth of its CPU (the profile in docs/benchmarks.md), and with TLS one record
//! each. [`CoalescingStream`] takes h2's bytes into a buffer and, when h2 flushes, writes at once
//! only if its last write is at least the coalescing time old; otherwise a timer wakes the
//! connection then, and its next flush writes everything gathered meanwhile in one go. A connection that carries little
//! (a write now and then) is never delayed; a busy one writes at most once per coalescing time,
//! and no byte waits longer than that. Reads pass straight through (a result is never delayed).
//!
//! [`CoalescingConnector`] makes these connections (plain TCP, the options tonic's own connector
//! would set); tonic adds TLS on top for `https://`, so the coalescing is of encrypted records.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tonic::transport::Uri;

/// Bytes gathered before a write is made whatever the timer says: bounds the buffer (h2 then
/// waits, as it would for a full socket).
const MAX_GATHERED: usize = 64 * 1024;

/// A connection whose writes are gathered for up to `coalesce` (see the module doc).
pub struct CoalescingStream {
    inner: TokioIo<TcpStream>,
    /// Written by h2, not yet by the socket.
    gathered: BytesMut,
    coalesce: Duration,
    /// When the socket was last written to.
    last_write: Option<Instant>,
    /// Set to `last_write + coalesce` while gathered bytes wait (one allocation, reset each time).
    timer: Pin<Box<Sleep>>,
    timer_armed: bool,
}

impl CoalescingStream {
    pub fn new(inner: TokioIo<TcpStream>, coalesce: Duration) -> CoalescingStream {
        CoalescingStream {
            inner,
            gathered: BytesMut::new(),
            coalesce,
            last_write: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_armed: false,
        }
    }
}

impl CoalescingStream {
    /// Writes everything gathered; `Pending` while the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.gathered.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.gathered))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.gathered.advance(n);
            self.last_write = Some(Instant::now());
        }
        self.timer_armed = false;
        Poll::Ready(Ok(()))
    }

    /// Makes room for more bytes: writes first when the buffer is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.gathered.len() >= MAX_GATHERED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(MAX_GATHERED - self.gathered.len()))
    }

    /// `Ready` once the gathered bytes may be written: at once if the last write is old enough,
    /// else when the timer fires.
    fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let due = match self.last_write {
            Some(last) if !self.coalesce.is_zero() => last + self.coalesce,
            _ => return Poll::Ready(()),
        };
        if Instant::now() >= due {
            return Poll::Ready(());
        }
        if !self.timer_armed {
            self.timer.as_mut().reset(due);
            self.timer_armed = true;
        }
        self.timer.as_mut().poll(cx)
    }
}

impl Read for CoalescingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl Write for CoalescingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = ready!(this.poll_room(cx))?;
        let n = buf.len().min(room);
        this.gathered.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut room = ready!(this.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room);
            this.gathered.extend_from_slice(&buf[..n]);
            taken += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Writes what was gathered if it is due; if not, reports success all the same: h2 also
    /// flushes to make room for its next frame (one DATA frame at a time), and waiting here would
    /// let one frame through per coalescing time. The timer, polled with this task's waker, wakes
    /// the connection, and h2 flushes at the end of every poll of it: that flush writes.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.gathered.is_empty() {
            if this.poll_due(cx).is_pending() {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for CoalescingStream {
    /// A connection dropped with bytes still gathered (the TLS alert of a failed handshake, a
    /// GOAWAY) writes them if the socket takes them now: the peer should learn why.
    fn drop(&mut self) {
        if !self.gathered.is_empty() {
            let _ = self.inner.inner().try_write(&self.gathered);
        }
    }
}

/// Opens TCP connections to the endpoint (TCP_NODELAY, keepalive) as [`CoalescingStream`]s.
#[derive(Debug, Clone)]
pub struct CoalescingConnector {
    http: HttpConnector,
    coalesce: Duration,
}

impl CoalescingConnector {
    pub fn new(tcp_keepalive: Duration, coalesce: Duration) -> CoalescingConnector {
        let mut http = HttpConnector::new();
        // https:// is the scheme tonic's TLS layer (above this connector) speaks.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(tcp_keepalive));
        CoalescingConnector { http, coalesce }
    }
}

type ConnectError = Box<dyn std::error::Error + Send + Sync>;

type Connecting = Pin<Box<dyn Future<Output = Result<CoalescingStream, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for CoalescingConnector {
    type Response = CoalescingStream;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = tower_service::Service::<Uri>::call(&mut self.http, uri);
        let coalesce = self.coalesce;
        Box::pin(async move {
            let io = connecting.await.map_err(ConnectError::from)?;
            Ok(CoalescingStream::new(io, coalesce))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    /// Writes through the stream as h2 does: write, then flush (which may leave bytes gathered).
    async fn write_and_flush(s: &mut CoalescingStream, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            done += std::future::poll_fn(|cx| Pin::new(&mut *s).poll_write(cx, &bytes[done..]))
                .await
                .expect("write");
        }
        let flushed = std::future::poll_fn(|cx| Pin::new(&mut *s).poll_flush(cx)).await;
        assert!(flushed.is_ok());
    }

    /// Flushes as h2's connection task does after each wake-up, until nothing is gathered.
    async fn flush_until_written(s: &mut CoalescingStream) {
        std::future::poll_fn(|cx| {
            if Pin::new(&mut *s).poll_flush(cx).is_ready() && s.gathered.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    async fn pair(coalesce: Duration) -> (CoalescingStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = CoalescingStream::new(TokioIo::new(client.expect("connect")), coalesce);
        (client, server.expect("accept").0)
    }

    /// The first flush writes at once; bytes flushed within the coalescing time after it stay
    /// gathered until the timer wakes the task, then leave together; all arrive, in order.
    #[tokio::test(start_paused = true)]
    async fn flushes_within_the_coalescing_time_leave_in_one_write() {
        let (mut client, mut server) = pair(Duration::from_millis(5)).await;
        write_and_flush(&mut client, b"first ").await;
        assert!(
            client.gathered.is_empty(),
            "nothing waits after the first flush"
        );
        let started = Instant::now();
        write_and_flush(&mut client, b"second ").await;
        write_and_flush(&mut client, b"third").await;
        assert_eq!(
            &client.gathered[..],
            b"second third",
            "both wait for the timer"
        );
        flush_until_written(&mut client).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(5),
            "written when the timer fired"
        );
        let mut got = vec![0u8; 18];
        assert!(server.read_exact(&mut got).await.is_ok());
        assert_eq!(got, b"first second third");
    }

    /// Many frames, each written and flushed as h2 does (it flushes to make room for the next
    /// DATA frame), are all taken at once, without waiting for the timer in between.
    #[tokio::test(start_paused = true)]
    async fn frames_are_taken_without_waiting_for_the_timer() {
        let (mut client, _server) = pair(Duration::from_millis(5)).await;
        write_and_flush(&mut client, b"a").await;
        let started = Instant::now();
        for frame in [b"b", b"c", b"d"] {
            write_and_flush(&mut client, frame).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "no frame waited");
        assert_eq!(&client.gathered[..], b"bcd");
        flush_until_written(&mut client).await;
        assert!(client.gathered.is_empty(), "one write took all three");
    }

    /// With no coalescing time every flush writes at once.
    #[tokio::test(start_paused = true)]
    async fn zero_coalescing_writes_at_every_flush() {
        let (mut client, _server) = pair(Duration::ZERO).await;
        for frame in [b"a", b"b"] {
            write_and_flush(&mut client, frame).await;
            assert!(client.gathered.is_empty());
        }
    }

    /// A full buffer is written whatever the timer says.
    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_is_written_without_waiting() {
        let (mut client, mut server) = pair(Duration::from_secs(60)).await;
        write_and_flush(&mut client, b"x").await;
        let big = vec![7u8; MAX_GATHERED + 10];
        let mut done = 0;
        while done < big.len() {
            done += std::future::poll_fn(|cx| Pin::new(&mut client).poll_write(cx, &big[done..]))
                .await
                .expect("write");
        }
        assert!(
            client.gathered.len() < MAX_GATHERED,
            "the full buffer was written"
        );
        let mut got = vec![0u8; 1 + MAX_GATHERED];
        assert!(server.read_exact(&mut got).await.is_ok());
    }

    /// Dropping the connection writes what is gathered, if the socket takes it.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_connection_writes_what_is_gathered() {
        let (mut client, mut server) = pair(Duration::from_secs(60)).await;
        write_and_flush(&mut client, b"x").await;
        write_and_flush(&mut client, b"alert").await;
        assert_eq!(&client.gathered[..], b"alert");
        drop(client);
        let mut got = Vec::new();
        assert!(server.read_to_end(&mut got).await.is_ok());
        assert_eq!(got, b"xalert");
    }

    /// Shutting down writes what is gathered first.
    #[tokio::test(start_paused = true)]
    async fn shutdown_writes_what_is_gathered() {
        let (mut client, mut server) = pair(Duration::from_secs(60)).await;
        write_and_flush(&mut client, b"x").await;
        write_and_flush(&mut client, b"yz").await;
        let shut = std::future::poll_fn(|cx| Pin::new(&mut client).poll_shutdown(cx)).await;
        assert!(shut.is_ok());
        let mut got = Vec::new();
        assert!(server.read_to_end(&mut got).await.is_ok());
        assert_eq!(got, b"xyz");
    }
}
