//! Build script: generates the server side of `google.cloud.speech.v1.Speech` and
//! `google.cloud.speech.v2.Speech` for the emulator.
//!
//! The `googleapis-tonic-google-cloud-speech-v1` and `-v2` crates ship the client only. The emulator
//! must serve the very same message types, so each server trait and router is generated here with
//! tonic-build's manual builder (no `.proto` file and no `protoc` needed), pointing at that crate's
//! prost types and tonic-prost's codec. Only `StreamingRecognize` is declared: calls to the other
//! methods get `UNIMPLEMENTED` from tonic's routing, as from any server that lacks them.

/// The `Speech` service of `package`, with `StreamingRecognize` on the messages in `messages`.
fn speech_service(package: &str, messages: &str) -> tonic_build::manual::Service {
    let streaming_recognize = tonic_build::manual::Method::builder()
        .name("streaming_recognize")
        .route_name("StreamingRecognize")
        .input_type(format!("{messages}::StreamingRecognizeRequest"))
        .output_type(format!("{messages}::StreamingRecognizeResponse"))
        .codec_path("tonic_prost::ProstCodec")
        .client_streaming()
        .server_streaming()
        .build();
    tonic_build::manual::Service::builder()
        .name("Speech")
        .package(package)
        .method(streaming_recognize)
        .build()
}

fn main() {
    let v1 = speech_service(
        "google.cloud.speech.v1",
        "googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1",
    );
    let v2 = speech_service(
        "google.cloud.speech.v2",
        "googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2",
    );
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_transport(false)
        .compile(&[v1, v2]);
    println!("cargo:rerun-if-changed=build.rs");
}
