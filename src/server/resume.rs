//! The server's side of resuming sessions (issue #15): a [`ResumeSigner`] per connection signs its
//! session's resume tokens with `[auth] token_secret` and opens the token a resuming client
//! presents, refusing one of another key. The actors only see the [`ResumeTokens`] trait: the
//! secret stays here.
//!
//! Any instance with the same secret opens the token; none keeps state. Without a configured
//! secret each process signs with a random one, so a session resumes on the same process only.

use std::sync::Arc;
use std::time::Duration;

use voxgate_actors::session::resume::{ResumeRefusal, ResumeState, ResumeTokens};

use super::gatekeeper::Gatekeeper;
use super::tokens::{unix_now, ResumeClaims, TokenError};

/// Resume tokens for the connections of one key (or of anonymous clients).
pub struct ResumeSigner {
    /// Holds the token signer.
    gate: Arc<Gatekeeper>,
    /// The connecting client's API key id; `None` when anonymous.
    key_id: Option<String>,
    /// `[session] resume_window_secs`.
    window: Duration,
}

impl ResumeSigner {
    pub fn new(gate: Arc<Gatekeeper>, key_id: Option<String>, window: Duration) -> ResumeSigner {
        ResumeSigner {
            gate,
            key_id,
            window,
        }
    }
}

impl ResumeTokens for ResumeSigner {
    fn mint(&self, state: &ResumeState) -> String {
        let claims = ResumeClaims {
            state: state.clone(),
            kid: self.key_id.clone(),
            // Rounded up: a token is never valid for less than the window.
            exp: unix_now() + self.window.as_secs() + u64::from(self.window.subsec_nanos() > 0),
        };
        self.gate.auth.tokens.mint_resume(&claims)
    }

    fn open(&self, token: &str) -> Result<ResumeState, ResumeRefusal> {
        let claims = self
            .gate
            .auth
            .tokens
            .verify_resume(token, unix_now())
            .map_err(|e| match e {
                TokenError::Malformed => ResumeRefusal::Malformed,
                TokenError::BadSignature => ResumeRefusal::Forged,
                TokenError::Expired => ResumeRefusal::Expired,
            })?;
        if claims.kid != self.key_id {
            return Err(ResumeRefusal::OtherKey);
        }
        Ok(claims.state)
    }

    fn window(&self) -> Duration {
        self.window
    }
}
