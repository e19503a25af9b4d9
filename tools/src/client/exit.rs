//! What `voxgate stream` exits with: a [`Failure`] says what went wrong, in words for stderr and
//! as an exit code a script can branch on (`docs/clients.md` lists them).

use std::process::ExitCode;

/// Why a stream did not end well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Arguments that cannot be used (exit 2, as for clap's own usage errors).
    Usage(String),
    /// The audio cannot be read: a missing file, a format voxgate cannot stream (exit 3).
    Input(String),
    /// The server cannot be reached: refused TCP connection, DNS, TLS (exit 4).
    Unreachable(String),
    /// The server answered the upgrade with a refusal: a wrong key (401), an origin (403), the
    /// rate limit (429) (exit 5).
    Refused(String),
    /// The session failed: the server sent an error, or the connection broke (exit 6).
    Session(String),
    /// A transcript file could not be written (exit 7).
    Output(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Input(_) => 3,
            Failure::Unreachable(_) => 4,
            Failure::Refused(_) => 5,
            Failure::Session(_) => 6,
            Failure::Output(_) => 7,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m)
            | Failure::Input(m)
            | Failure::Unreachable(m)
            | Failure::Refused(m)
            | Failure::Session(m)
            | Failure::Output(m) => m,
        }
    }

    /// Says what failed on stderr; the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("voxgate stream: {}", self.message());
        ExitCode::from(self.exit_code())
    }
}

/// The `--help` text on exit codes (kept beside the codes).
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 every result received; 2 bad arguments; \
3 the audio cannot be read; 4 the server cannot be reached; 5 the server refused the connection \
(key, origin, rate); 6 the session failed (a server error or a broken connection); 7 a \
transcript file cannot be written.";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind has its own code, and the help text names each.
    #[test]
    fn codes_are_distinct_and_documented() {
        let all = [
            Failure::Usage(String::new()),
            Failure::Input(String::new()),
            Failure::Unreachable(String::new()),
            Failure::Refused(String::new()),
            Failure::Session(String::new()),
            Failure::Output(String::new()),
        ];
        let mut codes: Vec<u8> = all.iter().map(Failure::exit_code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for code in codes {
            assert!(EXIT_CODES_HELP.contains(&format!("; {code} ")), "{code}");
        }
    }
}
