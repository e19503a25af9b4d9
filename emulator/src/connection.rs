//! Killable connections: the emulator's TCP connections, wrapped so that a stream handler can cut the
//! whole connection (fault `drop`), as a network failure would — every stream on it fails at once.
//!
//! tonic hands each connection's [`ConnectionInfo`] to the handlers through the request extensions
//! (`Connected`); killing it makes every later read and write of the socket fail, hyper drops the
//! connection without a GOAWAY, and the socket closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// What a handler knows about its connection, and the means to cut it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Numbered in accept order, for logs.
    pub id: u64,
    pub remote_addr: Option<SocketAddr>,
    /// Cancelled when the connection is to be cut (a fault, or a forced shutdown).
    kill: CancellationToken,
}

impl ConnectionInfo {
    /// Cuts the connection: its socket fails from now on.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Completes when the connection has been cut.
    pub async fn killed(&self) {
        self.kill.cancelled().await;
    }
}

/// A TCP connection that fails once killed.
#[derive(Debug)]
pub struct KillableStream {
    inner: TcpStream,
    info: ConnectionInfo,
    /// Registers the connection task's waker, so that a read or write waiting on the socket is woken
    /// (and fails) when the connection is killed.
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableStream {
    /// Wraps an accepted socket; `kill` is its own token (a child of the server's, so a forced
    /// shutdown cuts every connection).
    pub fn new(inner: TcpStream, id: u64, kill: CancellationToken) -> KillableStream {
        // Small gRPC messages must not wait for Nagle's algorithm.
        let _ = inner.set_nodelay(true);
        let remote_addr = inner.peer_addr().ok();
        KillableStream {
            inner,
            killed: Box::pin(kill.clone().cancelled_owned()),
            info: ConnectionInfo {
                id,
                remote_addr,
                kill,
            },
        }
    }

    /// `Some(error)` once the connection has been killed (and the waker registered otherwise).
    fn check_killed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.killed.as_mut().poll(cx).is_ready() {
            Some(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection cut by the emulator",
            ))
        } else {
            None
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.check_killed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for KillableStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}
