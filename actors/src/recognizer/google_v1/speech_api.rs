//! What differs between the Google Speech API versions a [`super::GoogleRecognizer`] can call,
//! behind one trait: the method's path, the first (config) and audio requests, metadata the call
//! carries, and what a response means on the session clock. The actor — connection lease,
//! credentials, request queue, contract with the supervisor — is written once for every version.
//! [`V1`] is `google.cloud.speech.v1`; `super::super::google_v2` implements v2.

use bytes::Bytes;
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    StreamingRecognizeRequest, StreamingRecognizeResponse,
};

use super::convert::{
    audio_request, config_request, failure_from_response, is_end_of_single_utterance,
    transcript_from_result,
};
use crate::messages::{StreamFailure, Transcript};
use crate::protocol::{Honoured, StartConfig};

/// Where a stream's times stand when a response arrives.
#[derive(Debug, Clone, Copy)]
pub struct StreamClock<'a> {
    /// Session time of the stream's first frame.
    pub origin_ms: u64,
    /// End of the stream's last final so far (or the origin).
    pub previous_final_end_ms: u64,
    /// The language a result without one is in.
    pub language: &'a str,
}

/// What one response says, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiEvent {
    /// A result on the session clock.
    Result(Transcript),
    /// The upstream listens no more (single utterance): half-close and wait for the last results.
    EndOfSingleUtterance,
    /// Voice activity began / ended at this session time.
    SpeechStarted(u64),
    SpeechEnded(u64),
    /// The stream's billed audio so far, in milliseconds (cumulative per stream).
    BilledMs(u64),
    /// The response carries an error (v1's `error` field).
    Failed(StreamFailure),
}

/// One Speech API version, as the recognizer actor calls it.
pub trait SpeechApi: Unpin + 'static {
    type Request: prost::Message + Send + 'static;
    type Response: prost::Message + Default + Send + 'static;

    /// The gRPC path of `StreamingRecognize`.
    const PATH: &'static str;

    /// What this version honours of the features a session may ask for.
    const HONOURED: Honoured;

    /// The first request of a stream: the recognition configuration, no audio.
    fn config_request(&self, config: &StartConfig) -> Self::Request;

    /// A request carrying audio (no `self`: it is built on tonic's side of the call).
    fn audio_request(audio: Bytes) -> Self::Request;

    /// Metadata the call carries besides the credentials' (v2: the routing header).
    fn add_metadata<T>(&self, _request: &mut tonic::Request<T>) {}

    /// What a response says, on the session clock.
    fn events(&self, response: Self::Response, clock: StreamClock<'_>) -> Vec<ApiEvent>;
}

/// `google.cloud.speech.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct V1;

impl SpeechApi for V1 {
    type Request = StreamingRecognizeRequest;
    type Response = StreamingRecognizeResponse;

    const PATH: &'static str = "/google.cloud.speech.v1.Speech/StreamingRecognize";

    const HONOURED: Honoured = Honoured::GOOGLE_V1;

    fn config_request(&self, config: &StartConfig) -> Self::Request {
        config_request(config)
    }

    fn audio_request(audio: Bytes) -> Self::Request {
        audio_request(audio)
    }

    fn events(&self, response: Self::Response, clock: StreamClock<'_>) -> Vec<ApiEvent> {
        let mut previous = clock.previous_final_end_ms;
        let mut events = Vec::new();
        for result in &response.results {
            let transcript =
                transcript_from_result(result, clock.origin_ms, previous, clock.language);
            if transcript.is_final {
                previous = transcript.end_ms;
            }
            events.push(ApiEvent::Result(transcript));
        }
        if is_end_of_single_utterance(&response) {
            events.push(ApiEvent::EndOfSingleUtterance);
        }
        if let Some(failure) = failure_from_response(&response) {
            events.push(ApiEvent::Failed(failure));
        }
        events
    }
}
