//! The open-file limit: a gateway carrying thousands of sessions (and a bench opening them) needs a
//! descriptor per socket, beyond the usual soft limit of 1 024. At start-up the soft limit is raised
//! to the hard limit the administrator allows; nothing is raised beyond it.

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit; returns the soft limit now in force, or
/// why it could not be read or raised.
pub fn raise_open_files_limit() -> Result<libc::rlim_t, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(raised.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = super::raise_open_files_limit();
        assert!(now.as_ref().is_ok_and(|n| *n > 0), "{now:?}");
    }
}
