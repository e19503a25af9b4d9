//! G.711 A-law, the 8-bit telephony encoding of Europe and most of the world outside North
//! America and Japan, which Google v2 calls `ALAW`: a 13-bit linear sample is companded to a byte
//! (sign, 3-bit segment, 4-bit step) with every even bit inverted (XOR `0x55`), as in the ITU
//! reference code. The sibling of [`super::mulaw`]: the offline engine and the emulator decode it
//! with this, and the OpenAI dialect transcodes `audio/pcma` with [`to_linear16`]; Google v2 takes
//! it as it is.

/// The even bits G.711 inverts on the wire.
const EVEN_BITS: u8 = 0x55;

/// Every byte's linear value, computed once at compile time (decoding is a table look-up).
const DECODE_TABLE: [i16; 256] = build_decode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut byte = 0;
    while byte < 256 {
        let code = (byte as u8) ^ EVEN_BITS;
        let segment = (code >> 4) & 0x07;
        let step = ((code & 0x0F) as i32) << 4;
        // The middle of the step: segments 0 and 1 share one step size; each later one doubles.
        let magnitude = match segment {
            0 => step + 8,
            1 => step + 0x108,
            _ => (step + 0x108) << (segment - 1),
        };
        table[byte] = if code & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        };
        byte += 1;
    }
    table
}

/// Compands one 16-bit sample to an A-law byte.
pub fn encode_sample(sample: i16) -> u8 {
    // A-law works on 13 bits; a negative sample is coded as its one's complement.
    let shifted = i32::from(sample) >> 3;
    let (sign, magnitude) = if shifted >= 0 {
        (0x80u8, shifted)
    } else {
        (0x00u8, -shifted - 1)
    };
    // The segment: how many times the magnitude's range doubled past 0x1F (0–7; 8 = clipped).
    let segment = match magnitude {
        0..=0x1F => 0,
        _ => (31 - (magnitude as u32).leading_zeros()) as u8 - 4,
    };
    let code = if segment >= 8 {
        0x7F
    } else {
        let step_shift = if segment < 2 { 1 } else { segment };
        (segment << 4) | ((magnitude >> step_shift) & 0x0F) as u8
    };
    (sign | code) ^ EVEN_BITS
}

/// Expands one A-law byte to a 16-bit sample.
pub fn decode_sample(byte: u8) -> i16 {
    DECODE_TABLE[usize::from(byte)]
}

/// A-law bytes as little-endian LINEAR16 bytes (two per input byte).
pub fn to_linear16(alaw: &[u8]) -> Vec<u8> {
    alaw.iter()
        .flat_map(|&b| decode_sample(b).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of the ITU-T G.711 A-law table (as the reference `alaw2linear` computes them).
    #[test]
    fn known_codes_decode_to_the_g711_table() {
        for (byte, linear) in [
            (0xD5u8, 8i16), // the smallest positive step: what silence encodes to
            (0x55, -8),
            (0xD4, 24),
            (0xC5, 264),
            (0xF5, 528),
            (0xAA, 32_256), // the largest magnitude
            (0x2A, -32_256),
            (0x80, 5_504),
            (0x00, -5_504),
        ] {
            assert_eq!(decode_sample(byte), linear, "{byte:#04x}");
        }
    }

    #[test]
    fn to_linear16_gives_two_little_endian_bytes_a_sample() {
        assert_eq!(
            to_linear16(&[0xD5, 0x2A]),
            [8i16.to_le_bytes(), (-32_256i16).to_le_bytes()].concat()
        );
    }

    #[test]
    fn known_samples_encode_to_the_g711_codes() {
        for (linear, byte) in [
            (0i16, 0xD5u8),
            (-1, 0x55),
            (8, 0xD5),
            (-8, 0x55),
            (24, 0xD4),
            (1_056, 0xE5),
            (32_767, 0xAA),
            (-32_768, 0x2A),
        ] {
            assert_eq!(encode_sample(linear), byte, "{linear}");
        }
    }

    #[test]
    fn every_byte_is_a_fixed_point_of_decode_then_encode() {
        for byte in 0..=255u8 {
            assert_eq!(
                encode_sample(decode_sample(byte)),
                byte,
                "byte {byte:#04x} → {}",
                decode_sample(byte)
            );
        }
    }

    #[test]
    fn quantisation_error_is_within_half_a_step() {
        for sample in (-32_000i16..32_000).step_by(7) {
            let back = i32::from(decode_sample(encode_sample(sample)));
            let error = (back - i32::from(sample)).abs();
            // Steps are 16 in segments 0 and 1, then double: half a step of the sample's segment.
            let bound = (i32::from(sample).abs() / 32).max(8) + 1;
            assert!(error <= bound, "{sample} → {back}");
        }
    }
}
