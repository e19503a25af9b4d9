//! How a session gets its pipeline (audio buffer + stream supervisor + recognizers).
//!
//! The session only knows this trait and the [`PipelineHandle`] it returns, so a test can start a
//! session whose pipeline is a probe.

use std::sync::Arc;

use crate::messages::{PipelineHandle, SessionLinks};
use crate::protocol::StartConfig;

/// Starts the actors that carry one session's audio upstream and its results back. Called on the
/// session's arbiter when the session is configured; everything it starts lives there too.
pub trait PipelineFactory {
    fn start(
        &self,
        session_id: Arc<str>,
        config: Arc<StartConfig>,
        links: SessionLinks,
    ) -> PipelineHandle;
}
