//! The systemd service manager's readiness protocol (`Type=notify`, sd_notify(3)): `READY=1` once
//! the listener is bound and the backend loaded, `STOPPING=1` when a graceful shutdown begins.
//! Without `$NOTIFY_SOCKET` (not started by systemd) it does nothing.
//!
//! A few lines over a Unix datagram socket instead of a crate: the protocol is one datagram of
//! `KEY=value` lines to the path (or, with a leading `@`, the abstract socket) systemd names.

/// Tells systemd `state` (e.g. `"READY=1"`), if it is listening. A failure is logged, never fatal:
/// the service works without its manager knowing.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!("systemd notification {state:?} not sent to {target:?}: {e}");
    }
}

#[cfg(target_os = "linux")]
fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target);
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), target)?;
        }
    }
    Ok(())
}

/// systemd runs on Linux only.
#[cfg(not(target_os = "linux"))]
fn send(_target: &std::ffi::OsStr, _state: &str) -> std::io::Result<()> {
    Ok(())
}
