//! Options set on every accepted connection (plain or TLS), before its first request.
//!
//! `TCP_USER_TIMEOUT` = `[server] send_timeout_secs`: data the server sent that stays
//! unacknowledged (a vanished peer) or cannot be sent because the client's window stays closed (a
//! client that stopped reading) for that long makes the kernel close the connection. That is what
//! ends a client which reads nothing at all: once its buffers are full, the HTTP connection stops
//! polling the session (its write buffer is full), so only the kernel can still tell. The
//! session's own backlog limit (`slow_consumer`) covers the clients that read, but too slowly.

use std::any::Any;
use std::time::Duration;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::rt::net::TcpStream;

/// Applies the options to the connection `io` (`TcpStream`, or TLS over one).
pub fn configure(io: &dyn Any, send_timeout: Duration) {
    let tcp = if let Some(tcp) = io.downcast_ref::<TcpStream>() {
        tcp
    } else if let Some(tls) = io.downcast_ref::<TlsStream<TcpStream>>() {
        tls.get_ref().0
    } else {
        return;
    };
    set_user_timeout(tcp, send_timeout);
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
fn set_user_timeout(tcp: &TcpStream, timeout: Duration) {
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!("cannot set TCP_USER_TIMEOUT: {e}");
    }
}

/// Elsewhere the option does not exist; the session's backlog limit and heartbeat remain.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
fn set_user_timeout(_: &TcpStream, _: Duration) {}
