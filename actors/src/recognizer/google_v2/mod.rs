//! The Google Speech-to-Text v2 recognizer: [`V2`], the [`SpeechApi`] that the Google recognizer
//! actor (`super::google_v1::GoogleRecognizer`, generic over the API version) calls v2 with, and
//! [`factory`] to start such actors. Everything the supervisor relies on — one actor per stream,
//! exactly one `Ended`, times on the session clock from the stream's origin, the connection pool and
//! the credentials — is the same code as v1's; only the messages differ ([`convert`]).
//!
//! A v2 stream names a recognizer (`projects/{project}/locations/{location}/recognizers/{id}`, `_`
//! for the implicit one, whose config each stream gives in full) and sends it in the routing header
//! `x-goog-request-params` as well: Google's need for the header is unconfirmed, and it is harmless.

pub mod convert;

use bytes::Bytes;
use tonic::metadata::{Ascii, MetadataValue};

use super::google_auth::Credentials;
use super::google_v1::pool::GoogleEndpoint;
use super::google_v1::{ApiEvent, GoogleRecognizerFactory, SpeechApi, StreamClock};
use crate::protocol::{Honoured, StartConfig};
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    StreamingRecognizeRequest, StreamingRecognizeResponse,
};

/// Google's documented per-request audio limit for v2 is 15 KB in the proto and 25 KB on the quotas
/// page; the lower one satisfies both (100 ms of 16 kHz LINEAR16 is 3 200 bytes).
pub const MAX_REQUEST_BYTES: usize = 15 * 1024;

/// The recognizer of a v2 stream, as `[google]` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognizerPath {
    pub project: String,
    pub location: String,
    /// `_`: the implicit recognizer.
    pub recognizer: String,
}

impl RecognizerPath {
    /// `projects/{project}/locations/{location}/recognizers/{recognizer}`.
    pub fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/recognizers/{}",
            self.project, self.location, self.recognizer
        )
    }
}

/// `google.cloud.speech.v2`, for one recognizer.
#[derive(Debug, Clone)]
pub struct V2 {
    /// The recognizer's full name, sent in every stream's first request.
    recognizer: String,
    /// `recognizer=<name, URL-encoded>`, the routing header's value.
    routing: MetadataValue<Ascii>,
}

impl V2 {
    /// The API for `path`; an error names what cannot go into a header.
    pub fn new(path: &RecognizerPath) -> Result<V2, String> {
        let recognizer = path.name();
        let encoded: String = form_urlencoded::byte_serialize(recognizer.as_bytes()).collect();
        let routing = format!("recognizer={encoded}")
            .parse()
            .map_err(|_| format!("recognizer name {recognizer:?} is not a valid header value"))?;
        Ok(V2 {
            recognizer,
            routing,
        })
    }

    /// The recognizer's full name.
    pub fn recognizer(&self) -> &str {
        &self.recognizer
    }
}

impl SpeechApi for V2 {
    type Request = StreamingRecognizeRequest;
    type Response = StreamingRecognizeResponse;

    const PATH: &'static str = "/google.cloud.speech.v2.Speech/StreamingRecognize";

    const HONOURED: Honoured = Honoured::GOOGLE_V2;

    fn config_request(&self, config: &StartConfig) -> Self::Request {
        convert::config_request(config, &self.recognizer)
    }

    fn audio_request(audio: Bytes) -> Self::Request {
        convert::audio_request(audio)
    }

    fn add_metadata<T>(&self, request: &mut tonic::Request<T>) {
        request
            .metadata_mut()
            .insert("x-goog-request-params", self.routing.clone());
    }

    fn events(&self, response: Self::Response, clock: StreamClock<'_>) -> Vec<ApiEvent> {
        convert::events(response, clock)
    }
}

/// A factory of v2 recognizers for one worker thread (see [`GoogleRecognizerFactory`]).
pub fn factory(
    endpoint: &GoogleEndpoint,
    credentials: Credentials,
    api: V2,
) -> GoogleRecognizerFactory<V2> {
    GoogleRecognizerFactory::with_api(endpoint, credentials, api)
}

#[cfg(test)]
mod tests;
