//! Client audio → what the engine hears: 16-bit samples at 16 kHz. LINEAR16 is read as
//! little-endian 16-bit samples, MULAW (8-bit G.711 µ-law, telephony) expanded to 16 bits; any
//! other rate is resampled to 16 kHz by a windowed-sinc interpolator (band-limited, so 8 kHz audio
//! is upsampled without images and 44.1/48 kHz audio downsampled without aliasing).
//!
//! 8 kHz audio (telephony) gets one more step. The en-us model is wideband: it was trained on
//! speech with energy up to 8 kHz and relies on the 4–7 kHz bands (fricatives, the "s" and "t" of
//! "ten meters"). Band-limited 8 kHz audio upsampled cleanly leaves those bands empty, and
//! PocketSphinx then misrecognises most of it ("go forward and you heard"). So the empty upper
//! band is filled with a mirror image of the lower one at half amplitude — spectral folding, a
//! classic bandwidth extension: multiplying the 16 kHz signal by `1 + ½·(−1)ᵏ` mirrors 0–4 kHz into
//! 4–8 kHz. Measured on goforward and the LibriVox clips (MULAW, 8 kHz): without it the words are
//! mostly lost; with it they are close to the 16 kHz results (see `docs/accuracy.md`).
//!
//! Conversion is streaming and exact with respect to chunking: the same bytes give the same
//! samples however they are split (a LINEAR16 sample split across two frames is carried over), and
//! the output sample `k` is always the input's value at time `k / 16000 s` — no delay to account
//! for. 16 kHz LINEAR16 passes through untouched.

use crate::audio::{alaw, mulaw, AudioFormat, Encoding};

/// The sample rate every engine works at: client audio is converted to it.
pub const ENGINE_RATE_HZ: u32 = 16_000;

/// Half the interpolation kernel, in samples at the lower of the two rates.
const HALF_TAPS: usize = 16;
/// The pass band ends this far below the lower Nyquist frequency (a fraction of it).
const CUTOFF: f64 = 0.92;

/// Amplitude of the mirrored upper band for 8 kHz input, relative to the signal (see module doc).
const FOLD_GAIN: f64 = 0.5;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Streaming band-limited rate conversion, `from` Hz → `to` Hz.
#[derive(Debug)]
pub struct Resampler {
    /// `to / from` reduced: output sample `k` is at input position `k · step / up`.
    up: u64,
    /// See `up`.
    step: u64,
    /// Kernel half-width in input samples.
    half_width: i64,
    /// Cut-off in cycles per input sample.
    cutoff: f64,
    /// Input samples from absolute index `base` on.
    input: Vec<f32>,
    /// Absolute index of `input[0]`.
    base: i64,
    /// Input samples received so far.
    received: i64,
    /// The next output sample's index.
    next: u64,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        let (from, to) = (u64::from(from.max(1)), u64::from(to.max(1)));
        let g = gcd(from, to);
        let ratio = (to as f64 / from as f64).min(1.0);
        Resampler {
            up: to / g,
            step: from / g,
            half_width: (HALF_TAPS as f64 / ratio).ceil() as i64,
            cutoff: 0.5 * ratio * CUTOFF,
            input: Vec::new(),
            base: 0,
            received: 0,
            next: 0,
        }
    }

    /// Input position of output sample `k`: whole part and fraction.
    fn position(&self, k: u64) -> (i64, f64) {
        let num = u128::from(k) * u128::from(self.step);
        let whole = (num / u128::from(self.up)) as i64;
        let frac = (num % u128::from(self.up)) as f64 / self.up as f64;
        (whole, frac)
    }

    fn sample_at(&self, index: i64) -> f64 {
        if index < self.base || index >= self.received {
            return 0.0;
        }
        f64::from(self.input[(index - self.base) as usize])
    }

    /// Windowed-sinc interpolation at input position `whole + frac`.
    fn interpolate(&self, whole: i64, frac: f64) -> i16 {
        let width = self.half_width as f64;
        let mut sum = 0.0;
        for index in (whole - self.half_width + 1)..=(whole + self.half_width) {
            let x = index as f64 - (whole as f64 + frac);
            if x.abs() >= width {
                continue;
            }
            let arg = 2.0 * self.cutoff * x;
            let sinc = if arg == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
            };
            // Blackman window over (−width, width).
            let phase = std::f64::consts::PI * (x / width + 1.0);
            let window = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
            sum += self.sample_at(index) * 2.0 * self.cutoff * sinc * window;
        }
        sum.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
    }

    /// Emits every output sample whose kernel lies inside the input received (all of them up to
    /// the end of the input when `flush`), then forgets input no longer needed.
    fn drain(&mut self, flush: bool, out: &mut Vec<i16>) {
        loop {
            let (whole, frac) = self.position(self.next);
            let ready = if flush {
                whole < self.received
            } else {
                whole + self.half_width < self.received
            };
            if !ready {
                break;
            }
            out.push(self.interpolate(whole, frac));
            self.next += 1;
        }
        let (whole, _) = self.position(self.next);
        let keep_from = (whole - self.half_width + 1).max(self.base);
        let drop = (keep_from - self.base).clamp(0, self.input.len() as i64) as usize;
        self.input.drain(..drop);
        self.base += drop as i64;
    }

    /// Converts more input, appending the output samples it completes to `out`.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<i16>) {
        self.input.extend(samples.iter().map(|&s| f32::from(s)));
        self.received += samples.len() as i64;
        self.drain(false, out);
    }

    /// The input is over: the remaining output (silence assumed after the end).
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        self.drain(true, out);
    }
}

/// Why a stream's audio cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the local engine decodes LINEAR16, MULAW and ALAW audio only, not {0} (use the google backend)")]
pub struct UnsupportedEncoding(pub &'static str);

/// One stream's conversion from its declared format to 16 kHz samples.
#[derive(Debug)]
pub struct AudioConverter {
    /// LINEAR16, MULAW or ALAW.
    encoding: Encoding,
    /// A LINEAR16 byte waiting for its pair.
    carry: Option<u8>,
    /// `None` at 16 kHz.
    resampler: Option<Resampler>,
    /// 8 kHz input: fill the empty upper band by spectral folding (see the module doc).
    fold: bool,
    /// Output samples produced so far (the parity of the folding).
    produced: u64,
    /// Decoded samples at the input rate (reused buffer).
    decoded: Vec<i16>,
}

impl AudioConverter {
    pub fn new(format: AudioFormat) -> Result<AudioConverter, UnsupportedEncoding> {
        if !format.encoding.is_uncompressed() {
            return Err(UnsupportedEncoding(format.encoding.as_str()));
        }
        Ok(AudioConverter {
            encoding: format.encoding,
            carry: None,
            resampler: (format.sample_rate_hz != ENGINE_RATE_HZ)
                .then(|| Resampler::new(format.sample_rate_hz, ENGINE_RATE_HZ)),
            fold: format.sample_rate_hz * 2 == ENGINE_RATE_HZ,
            produced: 0,
            decoded: Vec::new(),
        })
    }

    /// [`AudioConverter::new`] without the spectral folding of 8 kHz audio: for Moonshine, whose
    /// learned front end does better on plainly resampled telephone audio (the folding is for
    /// PocketSphinx's wideband model).
    pub fn without_folding(format: AudioFormat) -> Result<AudioConverter, UnsupportedEncoding> {
        let mut converter = AudioConverter::new(format)?;
        converter.fold = false;
        Ok(converter)
    }

    /// Converts `bytes` of the stream's audio; the 16 kHz samples are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        self.decoded.clear();
        match self.encoding {
            Encoding::Mulaw => self
                .decoded
                .extend(bytes.iter().map(|&b| mulaw::decode_sample(b))),
            Encoding::Alaw => self
                .decoded
                .extend(bytes.iter().map(|&b| alaw::decode_sample(b))),
            _ => {
                let mut rest = bytes;
                if let Some(low) = self.carry.take() {
                    if let Some((&high, tail)) = rest.split_first() {
                        self.decoded.push(i16::from_le_bytes([low, high]));
                        rest = tail;
                    } else {
                        self.carry = Some(low);
                    }
                }
                let mut pairs = rest.chunks_exact(2);
                self.decoded
                    .extend((&mut pairs).map(|p| i16::from_le_bytes([p[0], p[1]])));
                if let [last] = pairs.remainder() {
                    self.carry = Some(*last);
                }
            }
        }
        let from = out.len();
        match &mut self.resampler {
            Some(resampler) => resampler.push(&self.decoded, out),
            None => out.extend_from_slice(&self.decoded),
        }
        self.fold_from(from, out);
    }

    /// Applies the spectral folding to the samples appended to `out` from index `from` on.
    fn fold_from(&mut self, from: usize, out: &mut [i16]) {
        if !self.fold {
            return;
        }
        for sample in &mut out[from..] {
            let sign = if self.produced.is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            let folded = f64::from(*sample) * (1.0 + FOLD_GAIN * sign);
            *sample = folded
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            self.produced += 1;
        }
    }

    /// The audio is over: the samples the resampler still holds.
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        let from = out.len();
        if let Some(resampler) = &mut self.resampler {
            resampler.finish(out);
        }
        self.fold_from(from, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    fn convert_all(from: u32, input: &[i16], chunk: usize) -> Vec<i16> {
        let mut r = Resampler::new(from, 16_000);
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            r.push(piece, &mut out);
        }
        r.finish(&mut out);
        out
    }

    /// Root-mean-square error against the ideal sine at 16 kHz, away from the edges.
    fn rms_error(out: &[i16], hz: f64, amplitude: f64) -> f64 {
        let skip = 400;
        let inner = &out[skip..out.len() - skip];
        let sum: f64 = inner
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let t = (i + skip) as f64 / 16_000.0;
                let ideal = amplitude * (2.0 * std::f64::consts::PI * hz * t).sin();
                (f64::from(s) - ideal).powi(2)
            })
            .sum();
        (sum / inner.len() as f64).sqrt()
    }

    /// 8 kHz → 16 kHz: twice the samples, a tone in the band is reproduced closely and in time.
    #[test]
    fn upsamples_8k_without_delay() {
        let input = sine(8_000, 1_000.0, 1.0, 10_000.0);
        let out = convert_all(8_000, &input, 800);
        assert_eq!(out.len(), 16_000);
        let error = rms_error(&out, 1_000.0, 10_000.0);
        assert!(error < 100.0, "rms error {error}");
    }

    /// 48 kHz → 16 kHz: a tone in the band passes, one above 8 kHz is removed (no aliasing).
    #[test]
    fn downsamples_48k_without_aliasing() {
        let input = sine(48_000, 1_000.0, 1.0, 10_000.0);
        let out = convert_all(48_000, &input, 4_800);
        assert_eq!(out.len(), 16_000);
        assert!(rms_error(&out, 1_000.0, 10_000.0) < 100.0);
        let high = sine(48_000, 12_000.0, 1.0, 10_000.0);
        let out = convert_all(48_000, &high, 4_800);
        let rms = (out[400..15_600]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / 15_200.0)
            .sqrt();
        assert!(rms < 100.0, "12 kHz leaked through at rms {rms}");
    }

    /// The output does not depend on how the input is cut.
    #[test]
    fn chunking_does_not_change_the_output() {
        let input = sine(44_100, 440.0, 0.5, 8_000.0);
        let whole = convert_all(44_100, &input, input.len());
        for chunk in [1, 7, 441, 1_000] {
            assert_eq!(convert_all(44_100, &input, chunk), whole, "chunk {chunk}");
        }
    }

    /// LINEAR16 at 16 kHz passes through, even with samples split across pushes; MULAW is
    /// expanded; compressed encodings are refused.
    #[test]
    fn converter_handles_split_samples_and_encodings() {
        let format = |encoding, rate| AudioFormat {
            encoding,
            sample_rate_hz: rate,
        };
        let Ok(mut c) = AudioConverter::new(format(Encoding::Linear16, 16_000)) else {
            panic!("LINEAR16 is supported");
        };
        let samples: Vec<i16> = vec![1, -2, 300, -32_768, 32_767];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = Vec::new();
        c.push(&bytes[..3], &mut out);
        c.push(&bytes[3..], &mut out);
        c.finish(&mut out);
        assert_eq!(out, samples);

        let Ok(mut c) = AudioConverter::new(format(Encoding::Mulaw, 16_000)) else {
            panic!("MULAW is supported");
        };
        let mut out = Vec::new();
        c.push(&[0xFF, mulaw::encode_sample(1_000)], &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], 0);
        assert!((i32::from(out[1]) - 1_000).abs() < 64);

        let Ok(mut c) = AudioConverter::new(format(Encoding::Alaw, 16_000)) else {
            panic!("ALAW is supported");
        };
        let mut out = Vec::new();
        c.push(&[0xD5, alaw::encode_sample(-1_000)], &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], 8, "A-law's smallest step");
        assert!((i32::from(out[1]) + 1_000).abs() < 64);

        let refused = AudioConverter::new(format(Encoding::OggOpus, 48_000));
        assert_eq!(refused.err(), Some(UnsupportedEncoding("OGG_OPUS")));
    }
}
