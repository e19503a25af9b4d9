//! Moonshine's token table (`tokenizer.bin`): token ids to text.
//!
//! The file has no header: one record per token id, in id order, as many as the decoder's logits
//! are wide. A record is a length then that many raw bytes; the length is one byte, or two when the
//! first is ≥ 128 (`second × 128 + first − 128`). Ids 3–258 are single raw bytes (byte fallback, not
//! UTF-8 on their own), so text is decoded only after joining a whole sequence's bytes. `▁` marks
//! a word start. Control tokens (`<s>`, `</s>`, `<unk>`, the `<<ST_n>>` placeholders) never reach
//! the text.

/// The start-of-transcript token fed to the decoder first.
pub const START_TOKEN: i64 = 1;
/// The end-of-transcript token: decoding stops there.
pub const END_TOKEN: i64 = 2;
/// Ids up to this one are control tokens (`<unk>`, `<s>`, `</s>`).
const LAST_CONTROL_TOKEN: usize = 2;
/// SentencePiece's word-start mark, U+2581.
const WORD_MARK: &str = "\u{2581}";

/// Why a token table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    #[error("the token table ends inside record {record} (a truncated or foreign file)")]
    Truncated { record: usize },
    #[error("the token table is empty")]
    Empty,
}

/// The token table: the bytes of every id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenizer {
    /// `tokens[id]`: the raw bytes of token `id`.
    tokens: Vec<Vec<u8>>,
}

impl Tokenizer {
    /// Reads a table in the `tokenizer.bin` format.
    pub fn from_bytes(mut data: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let mut tokens = Vec::new();
        while let Some((&first, rest)) = data.split_first() {
            let record = tokens.len();
            let (len, rest) = if first < 128 {
                (usize::from(first), rest)
            } else {
                let (&second, rest) = rest
                    .split_first()
                    .ok_or(TokenizerError::Truncated { record })?;
                (usize::from(second) * 128 + usize::from(first) - 128, rest)
            };
            if rest.len() < len {
                return Err(TokenizerError::Truncated { record });
            }
            tokens.push(rest[..len].to_vec());
            data = &rest[len..];
        }
        if tokens.is_empty() {
            return Err(TokenizerError::Empty);
        }
        Ok(Tokenizer { tokens })
    }

    /// Tokens in the table.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the table has no tokens (never true for a table that was read).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `token` is a control or placeholder token, which has no text.
    fn is_control(token: &[u8], id: usize) -> bool {
        id <= LAST_CONTROL_TOKEN
            || (token.len() > 2 && token.starts_with(b"<") && token.ends_with(b">"))
    }

    /// The text of a token sequence: bytes joined, then UTF-8 (invalid bytes replaced), word
    /// marks as spaces, trimmed. Unknown ids are skipped.
    pub fn decode(&self, ids: &[i64]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Ok(index) = usize::try_from(id) else {
                continue;
            };
            if let Some(token) = self.tokens.get(index) {
                if !Tokenizer::is_control(token, index) {
                    bytes.extend_from_slice(token);
                }
            }
        }
        String::from_utf8_lossy(&bytes)
            .replace(WORD_MARK, " ")
            .trim()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `records` in the file's format.
    fn table(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            assert!(r.len() < 128);
            out.push(r.len() as u8);
            out.extend_from_slice(r);
        }
        out
    }

    fn small() -> Tokenizer {
        let mut records: Vec<&[u8]> = vec![b"<unk>", b"<s>", b"</s>"];
        records.extend([
            "\u{2581}Hello".as_bytes(),
            b",",
            "\u{2581}world".as_bytes(),
            b"<<ST_0>>",
            b"",
            &[0xC3],
            &[0xA9],
            &[0xFF],
        ]);
        Tokenizer::from_bytes(&table(&records)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn words_marks_and_control_tokens() {
        let t = small();
        assert_eq!(t.len(), 11);
        assert_eq!(t.decode(&[1, 3, 4, 5, 2]), "Hello, world");
        assert_eq!(
            t.decode(&[1, 6, 7, 3, 0]),
            "Hello",
            "placeholders, empty, unk"
        );
        assert_eq!(t.decode(&[]), "");
        assert_eq!(t.decode(&[-1, 99, 3]), "Hello", "unknown ids are skipped");
    }

    /// Byte tokens are joined before UTF-8 decoding: two halves make "é"; a stray byte becomes the
    /// replacement character rather than an error.
    #[test]
    fn bytes_are_joined_before_utf8() {
        let t = small();
        assert_eq!(t.decode(&[3, 8, 9]), "Hello\u{e9}");
        assert_eq!(t.decode(&[3, 10]), "Hello\u{fffd}");
    }

    #[test]
    fn two_byte_lengths_are_read() {
        let long = vec![b'a'; 200];
        // Length 200 = second × 128 + first − 128, with first = 200 and second = 1.
        let mut data = vec![200, 1];
        data.extend_from_slice(&long);
        data.extend(table(&[b"b"]));
        let t = Tokenizer::from_bytes(&data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.decode(&[0]), "", "id 0 is a control token");
        assert_eq!(t.tokens[0], long);
        assert_eq!(t.decode(&[1]), "");
        assert_eq!(t.tokens[1], b"b");
    }

    #[test]
    fn truncated_and_empty_tables_are_errors() {
        assert_eq!(
            Tokenizer::from_bytes(&[3, b'a']),
            Err(TokenizerError::Truncated { record: 0 })
        );
        assert_eq!(
            Tokenizer::from_bytes(&[1, b'a', 200]),
            Err(TokenizerError::Truncated { record: 1 })
        );
        assert_eq!(Tokenizer::from_bytes(&[]), Err(TokenizerError::Empty));
    }

    /// The installed table (when the setup script has run): 32 768 tokens, the control ids where
    /// the model expects them.
    #[test]
    fn the_installed_table_reads() {
        let path = crate::settings::LocalSettings::default()
            .moonshine_model_dir()
            .join("tokenizer.bin");
        let data = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/setup-offline-engine.sh)",
                path.display()
            )
        });
        let t = Tokenizer::from_bytes(&data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.len(), 32_768);
        assert_eq!(t.tokens[1], b"<s>");
        assert_eq!(t.tokens[2], b"</s>");
        assert_eq!(t.tokens[3], [0u8]);
        assert_eq!(t.tokens[258], [0xFFu8]);
    }
}
