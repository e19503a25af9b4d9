//! The stream-signature check of container encodings: a FLAC, Ogg or WebM stream starts with its
//! container's magic bytes, so audio that does not is refused at once (`invalid_audio`) rather
//! than sent upstream to fail there, seconds later and with a vaguer error.
//!
//! The signature may arrive split over several chunks (a client is free to send one byte at a
//! time), so [`SignatureCheck`] remembers how much of it the audio has matched so far.

use std::fmt;

use super::Encoding;

/// Checks the first bytes of one session's audio against its encoding's stream signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    encoding: Encoding,
    /// How many bytes of the signature the audio has matched so far.
    matched: usize,
}

/// The audio does not start with its encoding's stream signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureMismatch(pub Encoding);

impl fmt::Display for SignatureMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoding = self.0.as_str();
        let container = match self.0 {
            Encoding::Flac => "FLAC (`fLaC`)",
            Encoding::OggOpus => "Ogg (`OggS`)",
            _ => "WebM (EBML)",
        };
        write!(
            f,
            "{encoding} audio must start with the {container} stream signature; this is not \
             {encoding} audio"
        )
    }
}

impl std::error::Error for SignatureMismatch {}

impl SignatureCheck {
    /// A check of a stream of `encoding` audio, before its first byte.
    pub fn new(encoding: Encoding) -> SignatureCheck {
        SignatureCheck {
            encoding,
            matched: 0,
        }
    }

    /// The next chunk of the stream: an error when it contradicts the signature. Encodings
    /// without a signature accept anything; so does every encoding once the signature is matched.
    pub fn check(&mut self, data: &[u8]) -> Result<(), SignatureMismatch> {
        let Some(signature) = self.encoding.stream_signature() else {
            return Ok(());
        };
        let expected = &signature[self.matched.min(signature.len())..];
        let n = expected.len().min(data.len());
        if data[..n] != expected[..n] {
            return Err(SignatureMismatch(self.encoding));
        }
        self.matched += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_that_starts_with_its_signature_passes_and_anything_may_follow() {
        let mut check = SignatureCheck::new(Encoding::OggOpus);
        assert_eq!(check.check(b"OggS\x00\x02garbage"), Ok(()));
        assert_eq!(check.check(b"not a signature"), Ok(()));
    }

    #[test]
    fn a_signature_split_over_chunks_is_matched_piece_by_piece() {
        let mut check = SignatureCheck::new(Encoding::Flac);
        assert_eq!(check.check(b""), Ok(()));
        assert_eq!(check.check(b"f"), Ok(()));
        assert_eq!(check.check(b"La"), Ok(()));
        assert_eq!(check.check(b"C\x00rest"), Ok(()));
        assert_eq!(check.check(b"xxxx"), Ok(()));

        let mut check = SignatureCheck::new(Encoding::Flac);
        assert_eq!(check.check(b"fL"), Ok(()));
        assert_eq!(
            check.check(b"ac"),
            Err(SignatureMismatch(Encoding::Flac)),
            "the second piece contradicts the signature"
        );
    }

    #[test]
    fn a_stream_of_the_wrong_container_is_refused_naming_both() {
        let mut check = SignatureCheck::new(Encoding::WebmOpus);
        let refused = check.check(b"OggS....");
        assert_eq!(refused, Err(SignatureMismatch(Encoding::WebmOpus)));
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "WEBM_OPUS audio must start with the WebM (EBML) stream signature; this is not \
             WEBM_OPUS audio"
        );
        let ogg = SignatureMismatch(Encoding::OggOpus).to_string();
        assert!(ogg.contains("Ogg (`OggS`)"), "{ogg}");
        let flac = SignatureMismatch(Encoding::Flac).to_string();
        assert!(flac.contains("FLAC (`fLaC`)"), "{flac}");
    }

    #[test]
    fn encodings_without_a_signature_accept_any_bytes() {
        for encoding in [
            Encoding::Linear16,
            Encoding::Mulaw,
            Encoding::Amr,
            Encoding::AmrWb,
        ] {
            let mut check = SignatureCheck::new(encoding);
            assert_eq!(check.check(b"OggS"), Ok(()), "{encoding:?}");
            assert_eq!(check.check(&[0xff; 16]), Ok(()), "{encoding:?}");
        }
    }
}
