//! Recognizers: actors that each own one upstream recognition stream, and the factory trait the
//! supervisor uses to start them (a test passes a factory of probes).

use crate::messages::{StreamHandle, StreamRequest};

/// Starts one recognizer actor for one upstream stream.
pub trait RecognizerFactory {
    fn start(&self, request: StreamRequest) -> StreamHandle;
}
