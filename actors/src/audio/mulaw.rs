//! G.711 µ-law, the 8-bit telephony encoding Google calls `MULAW`: 16-bit samples are companded to
//! one byte (sign, 3-bit exponent, 4-bit mantissa, all bits inverted), as in the ITU reference code.

/// Added before companding so that the segments line up (ITU G.711).
const BIAS: i32 = 0x84;
/// Largest magnitude that survives the bias without overflow.
const CLIP: i32 = 32_635;

/// Every byte's linear value, computed once at compile time (decoding is a table look-up).
const DECODE_TABLE: [i16; 256] = build_decode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut byte = 0;
    while byte < 256 {
        let inverted = !(byte as u8);
        let exponent = (inverted >> 4) & 0x07;
        let mantissa = (inverted & 0x0F) as i32;
        let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
        table[byte] = if inverted & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        byte += 1;
    }
    table
}

/// Compands one 16-bit sample to a µ-law byte.
pub fn encode_sample(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    magnitude = magnitude.min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7 (0 when none).
    let segment = (magnitude >> 7) as u8;
    let exponent = 7 - segment.leading_zeros().min(7) as u8;
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Expands one µ-law byte to a 16-bit sample.
pub fn decode_sample(byte: u8) -> i16 {
    DECODE_TABLE[usize::from(byte)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_0xff_and_round_trips() {
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(decode_sample(0xFF), 0);
    }

    #[test]
    fn every_byte_is_a_fixed_point_of_decode_then_encode() {
        for byte in 0..=255u8 {
            let sample = decode_sample(byte);
            let again = encode_sample(sample);
            // 0x7F and 0xFF both mean zero; every other code is its own image.
            if sample == 0 {
                assert!(again == 0xFF || again == 0x7F);
            } else {
                assert_eq!(again, byte, "byte {byte:#04x} → {sample}");
            }
        }
    }

    #[test]
    fn quantisation_error_is_within_half_a_step() {
        for sample in (-32_000i16..32_000).step_by(7) {
            let back = i32::from(decode_sample(encode_sample(sample)));
            let error = (back - i32::from(sample)).abs();
            // The coarsest segment has steps of 1024.
            let bound = (i32::from(sample).abs() / 16).max(8);
            assert!(error <= bound, "{sample} → {back}");
        }
    }

    #[test]
    fn mulaw_round_trips_within_its_quantisation() {
        for sample in [-32_000i16, -1_000, -8, 0, 7, 100, 5_000, 32_767] {
            let back = decode_sample(encode_sample(sample));
            let tolerance = (i32::from(sample).abs() / 16).max(8);
            assert!(
                (i32::from(back) - i32::from(sample)).abs() <= tolerance,
                "{sample} -> {back}"
            );
        }
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(decode_sample(0xFF), 0);
    }
}
