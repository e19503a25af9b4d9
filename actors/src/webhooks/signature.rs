//! The signature of a webhook event: header `Voxgate-Signature: t=<unix seconds>,v1=<hex>`, where
//! the hex is HMAC-SHA256 with the `[webhooks] secret` of `"<t>.<body>"` (the body's exact
//! bytes). A receiver recomputes it, compares in constant time and refuses an old `t` (replays);
//! `docs/dialects.md` has Python and Node snippets. Each attempt is signed afresh, so a retried
//! event carries the time of its retry.

use ring::hmac;

/// The header's name.
pub const HEADER: &str = "voxgate-signature";

/// The header's value for `body` sent at `unix_secs`.
pub fn sign(secret: &[u8], unix_secs: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(unix_secs.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={unix_secs},v1={}", hex(context.sign().as_ref()))
}

/// Whether `header` is a valid signature of `body` with `secret` (what a receiver does; the
/// tests verify every delivery with it). Returns the signed time.
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> Option<u64> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = unhex(value),
            _ => {}
        }
    }
    let (t, v1) = (t?, v1?);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = t.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &v1).ok().map(|()| t)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector computed independently: `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac
    /// 'whsec_0123456789abcdef'`.
    #[test]
    fn signs_timestamp_dot_body() {
        let header = sign(b"whsec_0123456789abcdef", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2"
        );
        assert_eq!(
            verify(b"whsec_0123456789abcdef", &header, br#"{"a":1}"#),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn a_changed_body_time_or_secret_fails() {
        let header = sign(b"secret-secret-secret", 10, b"body");
        assert_eq!(verify(b"secret-secret-secret", &header, b"bodx"), None);
        assert_eq!(verify(b"secret-secret-secreT", &header, b"body"), None);
        let shifted = header.replace("t=10", "t=11");
        assert_eq!(verify(b"secret-secret-secret", &shifted, b"body"), None);
        assert_eq!(verify(b"secret-secret-secret", "t=10", b"body"), None);
        assert_eq!(verify(b"secret-secret-secret", "v1=zz,t=10", b"body"), None);
    }
}
