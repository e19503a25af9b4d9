//! `[auth] api_keys` entries as a typed value: the SHA-256 of an API key, written
//! `sha256:<64 hex digits>` in the configuration. Parsed here, where the file is read, so the
//! server's authenticator receives hashes, never strings to re-check.

use serde::{Deserialize, Deserializer};

/// The SHA-256 of an accepted API key (the keys themselves are never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// `sha256:<64 hex digits>` → the hash.
    pub fn parse(entry: &str) -> Option<KeyHash> {
        let hex = entry.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyHash(out))
    }

    /// The id a key is known by in logs, metrics and tokens: `k-` and the first 12 hex digits of
    /// its SHA-256.
    pub fn id(&self) -> String {
        let hex: String = self.0[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("k-{hex}")
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entry = String::deserialize(deserializer)?;
        // Never quoted: an entry that is not a hash is most likely a key pasted raw.
        KeyHash::parse(&entry).ok_or_else(|| {
            serde::de::Error::custom(
                "expected `sha256:<64 hex digits>` (store the SHA-256 of the key, e.g. \
                 `printf %s \"$KEY\" | sha256sum`, never the key itself)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_must_be_sha256_hex() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(KeyHash::parse(&good), Some(KeyHash([0xab; 32])));
        for bad in [
            "",
            "sha256:",
            "sha1:00",
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha256:{}", "0".repeat(63)),
            &format!("sha256:{}é", "0".repeat(62)),
        ] {
            assert!(KeyHash::parse(bad).is_none(), "{bad}");
        }
    }
}
