//! `GET /v1/offer`: what this server offers a client, as a small JSON document the web page (and
//! any other client) reads to fill its pickers: the engine behind the sessions, the models and
//! languages worth choosing, the encodings accepted, and whether a credential is needed.
//!
//! Built once from the configuration when the server starts; it names no secret and no path.
//! A server runs one backend, so the lists are those of that backend: the offline engines know
//! one model and English only; Google knows many, of which the common ones are listed (a client
//! may still send any valid `model` / `language_code`).

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use voxgate_actors::audio::Encoding;
use voxgate_actors::settings::{GoogleApi, LocalEngineKind};

use super::gatekeeper::Gatekeeper;
use crate::config::{Backend, Config};

/// Google's v1 models that make sense for live speech (`""` is Google's default).
const GOOGLE_MODELS: [(&str, &str); 6] = [
    ("", "default"),
    ("latest_long", "latest_long: long-form speech"),
    (
        "latest_short",
        "latest_short: commands and short utterances",
    ),
    ("phone_call", "phone_call: telephone audio"),
    ("video", "video: media with several speakers"),
    ("command_and_search", "command_and_search: voice search"),
];

/// A selection of Google's languages (first: the default); clients may send any BCP-47 tag.
const GOOGLE_LANGUAGES: [&str; 14] = [
    "en-US",
    "en-GB",
    "en-IN",
    "en-AU",
    "de-DE",
    "fr-FR",
    "es-ES",
    "es-US",
    "it-IT",
    "pt-BR",
    "nl-NL",
    "ja-JP",
    "ko-KR",
    "cmn-Hans-CN",
];

/// One model a client may put in `start`'s `model`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelChoice {
    /// The value for `model`.
    pub id: &'static str,
    /// What a person picking it reads.
    pub label: &'static str,
}

/// The document `GET /v1/offer` answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Offer {
    /// `[recognizer] backend`: `local`, `google` or `emulator`.
    pub backend: &'static str,
    /// The engine behind it, for people: `moonshine`, `pocketsphinx`, `google-speech-v1`, …
    pub engine: &'static str,
    pub models: Vec<ModelChoice>,
    /// BCP-47 tags; the first is the default.
    pub languages: Vec<&'static str>,
    /// What `start`'s `encoding` accepts.
    pub encodings: Vec<&'static str>,
    /// The sample rate the page sends (any 8000–48000 is accepted for LINEAR16).
    pub sample_rate_hz: u32,
    /// Whether `/v1/listen` needs an API key or a session token (`false`: anonymous clients are
    /// accepted, e.g. on loopback without keys).
    pub credential_required: bool,
    /// The server's version.
    pub version: &'static str,
}

impl Offer {
    /// What a server with `config` offers; `credential_required` is filled in per request from
    /// the authenticator (the one authority on it).
    pub fn from_config(config: &Config) -> Offer {
        let (backend, engine, models, languages): (_, _, Vec<ModelChoice>, Vec<&'static str>) =
            match config.recognizer.backend {
                Backend::Local => {
                    let (engine, label) = match config.local.engine {
                        LocalEngineKind::Moonshine => ("moonshine", "moonshine-tiny-en"),
                        LocalEngineKind::Pocketsphinx => ("pocketsphinx", "pocketsphinx en-us"),
                    };
                    let default = ModelChoice { id: "", label };
                    ("local", engine, vec![default], vec!["en-US"])
                }
                Backend::Google => (
                    "google",
                    match config.google.api {
                        GoogleApi::V1 => "google-speech-v1",
                        GoogleApi::V2 => "google-speech-v2",
                    },
                    GOOGLE_MODELS
                        .iter()
                        .map(|&(id, label)| ModelChoice { id, label })
                        .collect(),
                    GOOGLE_LANGUAGES.to_vec(),
                ),
                Backend::Emulator => (
                    "emulator",
                    "voxgate-emulator",
                    vec![ModelChoice {
                        id: "",
                        label: "emulator (synthetic speech only)",
                    }],
                    vec!["en-US"],
                ),
            };
        Offer {
            backend,
            engine,
            models,
            languages,
            encodings: Encoding::ALL
                .iter()
                .filter(|&&e| e != Encoding::Alaw || alaw_accepted(config))
                .map(|e| e.as_str())
                .collect(),
            sample_rate_hz: 16_000,
            credential_required: true,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Whether `start` takes A-law audio here: Google v1 has no A-law (the Google backends and the
/// embedded emulator follow `[google] api`); the local engine decodes it.
fn alaw_accepted(config: &Config) -> bool {
    config.recognizer.backend == Backend::Local || config.google.api == GoogleApi::V2
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/offer", web::get().to(offer));
}

/// The offer, with whether this server needs a credential. Public: it says nothing a page could
/// not learn by trying, and the page needs it before it has any credential.
async fn offer(offer: web::Data<Offer>, gate: web::Data<Gatekeeper>) -> HttpResponse {
    let mut offer = Offer::clone(&offer);
    offer.credential_required = !gate.auth.allows_anonymous();
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-cache"))
        .json(offer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_offers_its_own_engine_models_and_languages() {
        let mut config = Config::default();
        let local = Offer::from_config(&config);
        assert_eq!((local.backend, local.engine), ("local", "moonshine"));
        assert_eq!(local.models.len(), 1);
        assert_eq!(local.languages, ["en-US"]);

        config.local.engine = LocalEngineKind::Pocketsphinx;
        assert_eq!(Offer::from_config(&config).engine, "pocketsphinx");

        config.recognizer.backend = Backend::Google;
        let google = Offer::from_config(&config);
        assert_eq!(google.engine, "google-speech-v1");
        assert!(google.models.iter().any(|m| m.id == "latest_long"));
        assert_eq!(google.languages.first(), Some(&"en-US"));

        config.recognizer.backend = Backend::Emulator;
        assert_eq!(Offer::from_config(&config).backend, "emulator");
    }

    /// `ALAW` is offered only where `start` takes it: not by Google v1.
    #[test]
    fn alaw_is_offered_where_it_is_accepted() {
        let mut config = Config::default();
        assert!(Offer::from_config(&config).encodings.contains(&"ALAW"));
        for backend in [Backend::Google, Backend::Emulator] {
            config.recognizer.backend = backend;
            config.google.api = GoogleApi::V1;
            let v1 = Offer::from_config(&config);
            assert!(!v1.encodings.contains(&"ALAW"), "{v1:?}");
            assert!(v1.encodings.contains(&"MULAW"), "{v1:?}");
            config.google.api = GoogleApi::V2;
            assert!(Offer::from_config(&config).encodings.contains(&"ALAW"));
        }
        assert_eq!(Offer::from_config(&config).backend, "emulator");
        config.recognizer.backend = Backend::Google;
        assert_eq!(Offer::from_config(&config).engine, "google-speech-v2");
    }
}
