//! Build script: generates the server side of `google.cloud.speech.v1.Speech` for the emulator.
//!
//! The `googleapis-tonic-google-cloud-speech-v1` crate ships the client only. The emulator must
//! serve the very same message types, so the server trait and router are generated here with
//! tonic-build's manual builder (no `.proto` file and no `protoc` needed), pointing at that crate's
//! prost types and tonic-prost's codec. Only `StreamingRecognize` is declared: calls to the other
//! methods get `UNIMPLEMENTED` from tonic's routing, as from any server that lacks them.

fn main() {
    let messages = "googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1";
    let streaming_recognize = tonic_build::manual::Method::builder()
        .name("streaming_recognize")
        .route_name("StreamingRecognize")
        .input_type(format!("{messages}::StreamingRecognizeRequest"))
        .output_type(format!("{messages}::StreamingRecognizeResponse"))
        .codec_path("tonic_prost::ProstCodec")
        .client_streaming()
        .server_streaming()
        .build();
    let speech = tonic_build::manual::Service::builder()
        .name("Speech")
        .package("google.cloud.speech.v1")
        .method(streaming_recognize)
        .build();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_transport(false)
        .compile(&[speech]);
    println!("cargo:rerun-if-changed=build.rs");
}
