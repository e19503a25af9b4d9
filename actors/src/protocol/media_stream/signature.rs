//! Twilio's request signature on the WebSocket handshake: `X-Twilio-Signature` =
//! base64(HMAC-SHA1(auth token, the URL Twilio requested)). A WebSocket `GET` carries no POST
//! parameters, so the URL alone is signed. Compared in constant time (`ring::hmac::verify`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::hmac;

/// The header's name.
pub const HEADER: &str = "x-twilio-signature";

/// The signature Twilio sends for `url` (what a test client computes too).
pub fn sign(auth_token: &str, url: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    BASE64.encode(hmac::sign(&key, url.as_bytes()).as_ref())
}

/// Whether `signature` is Twilio's for one of `urls` (the URL as Twilio may have spelled it:
/// the configured public URL, or this request's host with each scheme).
pub fn valid(auth_token: &str, urls: &[String], signature: &str) -> bool {
    let Ok(tag) = BASE64.decode(signature.trim().as_bytes()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    urls.iter()
        .any(|url| hmac::verify(&key, url.as_bytes(), &tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector computed independently (Python: `base64(hmac.new(b"12345", url, sha1))`), in
    /// the shape of Twilio's documented example: the URL with its sorted POST parameters appended.
    #[test]
    fn signs_the_url_with_hmac_sha1() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2\
                   CallSidCA1234567890ABCDE\
                   Caller+12349013030\
                   Digits1234\
                   From+12349013030\
                   To+18005551212";
        assert_eq!(sign("12345", url), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(valid(
            "12345",
            &[url.to_string()],
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!valid(
            "12346",
            &[url.to_string()],
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!valid("12345", &[url.to_string()], "not base64!"));
        assert!(!valid(
            "12345",
            &["https://other".to_string()],
            &sign("12345", url)
        ));
    }
}
