//! G.711 A-law (`g711_alaw`, `audio/pcma`) decoded to LINEAR16: the pipeline takes µ-law and
//! linear PCM, so the dialect transcodes A-law on arrival (a table look-up per byte).

/// Every byte's linear value, computed once at compile time (ITU G.711 reference decoding).
const DECODE_TABLE: [i16; 256] = build_decode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut byte = 0;
    while byte < 256 {
        let a = (byte as u8) ^ 0x55;
        let mut magnitude = ((a & 0x0F) as i32) << 4;
        let segment = ((a & 0x70) >> 4) as i32;
        magnitude = match segment {
            0 => magnitude + 8,
            1 => magnitude + 0x108,
            _ => (magnitude + 0x108) << (segment - 1),
        };
        table[byte] = if a & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        };
        byte += 1;
    }
    table
}

/// A-law bytes as little-endian LINEAR16 bytes (two per input byte).
pub fn to_linear16(alaw: &[u8]) -> Vec<u8> {
    alaw.iter()
        .flat_map(|&b| DECODE_TABLE[usize::from(b)].to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_decode_as_g711_says() {
        // 0xD5 and 0x55 are the smallest magnitudes (±8); 0xAA and 0x2A the largest (±32256).
        let decode = |b: u8| i16::from_le_bytes([to_linear16(&[b])[0], to_linear16(&[b])[1]]);
        assert_eq!(decode(0xD5), 8);
        assert_eq!(decode(0x55), -8);
        assert_eq!(decode(0xAA), 32_256);
        assert_eq!(decode(0x2A), -32_256);
        assert_eq!(to_linear16(&[0xD5, 0x55]).len(), 4);
    }

    #[test]
    fn decoding_is_monotonic_within_each_sign() {
        // Positive codes, ordered by magnitude, decode to increasing values.
        let mut values: Vec<i16> = (0u8..=255).map(|b| DECODE_TABLE[usize::from(b)]).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), 256, "every code decodes to a distinct value");
    }
}
