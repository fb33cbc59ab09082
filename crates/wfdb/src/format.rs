//! Signal file storage formats: turning the bytes of a (possibly
//! multiplexed) signal file into a stream of digital sample values.
//!
//! Decoding works on the whole interleaved stream because format 212 packs
//! two 12-bit samples into three bytes regardless of frame boundaries.

/// WFDB storage formats this crate can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalFormat {
    /// 8-bit first differences (value = previous value + byte).
    F8,
    /// 16-bit two's complement, little-endian.
    F16,
    /// 24-bit two's complement, little-endian.
    F24,
    /// 32-bit two's complement, little-endian.
    F32,
    /// 16-bit two's complement, big-endian.
    F61,
    /// 8-bit offset binary (stored value - 128).
    F80,
    /// 16-bit offset binary (stored value - 32768).
    F160,
    /// Pairs of 12-bit two's complement samples packed into 3 bytes.
    F212,
}

impl SignalFormat {
    pub fn from_code(code: u16) -> Option<SignalFormat> {
        Some(match code {
            8 => SignalFormat::F8,
            16 => SignalFormat::F16,
            24 => SignalFormat::F24,
            32 => SignalFormat::F32,
            61 => SignalFormat::F61,
            80 => SignalFormat::F80,
            160 => SignalFormat::F160,
            212 => SignalFormat::F212,
            _ => return None,
        })
    }

    pub fn code(self) -> u16 {
        match self {
            SignalFormat::F8 => 8,
            SignalFormat::F16 => 16,
            SignalFormat::F24 => 24,
            SignalFormat::F32 => 32,
            SignalFormat::F61 => 61,
            SignalFormat::F80 => 80,
            SignalFormat::F160 => 160,
            SignalFormat::F212 => 212,
        }
    }

    /// ADC resolution WFDB assumes when the header omits it.
    pub fn default_resolution_bits(self) -> u32 {
        match self {
            SignalFormat::F8 | SignalFormat::F80 => 8,
            SignalFormat::F212 => 12,
            SignalFormat::F24 => 24,
            SignalFormat::F32 => 32,
            SignalFormat::F16 | SignalFormat::F61 | SignalFormat::F160 => 16,
        }
    }

    /// Digital value WFDB writes for a missing sample ("WFDB_INVALID_SAMPLE"
    /// truncated to the format's width); format 8 has none.
    pub fn invalid_value(self) -> Option<i32> {
        match self {
            SignalFormat::F8 => None,
            SignalFormat::F80 => Some(-128),
            SignalFormat::F212 => Some(-2048),
            SignalFormat::F16 | SignalFormat::F61 | SignalFormat::F160 => Some(-32768),
            SignalFormat::F24 => Some(-(1 << 23)),
            SignalFormat::F32 => Some(i32::MIN),
        }
    }

    /// Number of whole samples contained in `n_bytes`.
    pub(crate) fn samples_in(self, n_bytes: u64) -> u64 {
        match self {
            SignalFormat::F8 | SignalFormat::F80 => n_bytes,
            SignalFormat::F16 | SignalFormat::F61 | SignalFormat::F160 => n_bytes / 2,
            SignalFormat::F24 => n_bytes / 3,
            SignalFormat::F32 => n_bytes / 4,
            // A trailing lone sample needs the first two bytes of a triplet.
            SignalFormat::F212 => (n_bytes / 3) * 2 + u64::from(n_bytes % 3 == 2),
        }
    }

    /// Number of bytes needed to hold `n_samples`.
    pub(crate) fn bytes_for(self, n_samples: u64) -> u64 {
        // Saturating: only used to size checks and messages, where "too many" suffices.
        match self {
            SignalFormat::F8 | SignalFormat::F80 => n_samples,
            SignalFormat::F16 | SignalFormat::F61 | SignalFormat::F160 => {
                n_samples.saturating_mul(2)
            }
            SignalFormat::F24 => n_samples.saturating_mul(3),
            SignalFormat::F32 => n_samples.saturating_mul(4),
            SignalFormat::F212 => (n_samples / 2)
                .saturating_mul(3)
                .saturating_add((n_samples % 2) * 2),
        }
    }

    /// Decodes the first `n_samples` stored values of `bytes`. Format 8 is
    /// returned as raw differences; [`integrate_differences`] turns them
    /// into values per signal. The caller guarantees `bytes` is long enough
    /// (see [`Self::bytes_for`]).
    pub(crate) fn decode(self, bytes: &[u8], n_samples: usize) -> Vec<i32> {
        let mut out = Vec::with_capacity(n_samples);
        match self {
            SignalFormat::F8 => out.extend(bytes[..n_samples].iter().map(|&b| i32::from(b as i8))),
            SignalFormat::F80 => out.extend(bytes[..n_samples].iter().map(|&b| i32::from(b) - 128)),
            SignalFormat::F16 => out.extend(
                bytes[..2 * n_samples]
                    .chunks_exact(2)
                    .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]]))),
            ),
            SignalFormat::F61 => out.extend(
                bytes[..2 * n_samples]
                    .chunks_exact(2)
                    .map(|c| i32::from(i16::from_be_bytes([c[0], c[1]]))),
            ),
            SignalFormat::F160 => out.extend(
                bytes[..2 * n_samples]
                    .chunks_exact(2)
                    .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])) - 32768),
            ),
            SignalFormat::F24 => out.extend(bytes[..3 * n_samples].chunks_exact(3).map(|c| {
                // Place the 24 bits at the top of an i32, then shift back to sign-extend.
                i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8
            })),
            SignalFormat::F32 => out.extend(
                bytes[..4 * n_samples]
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            SignalFormat::F212 => {
                for i in 0..n_samples {
                    let base = (i / 2) * 3;
                    let raw = if i % 2 == 0 {
                        u16::from(bytes[base]) | (u16::from(bytes[base + 1] & 0x0f) << 8)
                    } else {
                        u16::from(bytes[base + 2]) | (u16::from(bytes[base + 1] & 0xf0) << 4)
                    };
                    out.push(sign_extend_12(raw));
                }
            }
        }
        out
    }
}

fn sign_extend_12(raw: u16) -> i32 {
    // Shift the 12-bit value to the top of an i16 and back to propagate the sign bit.
    i32::from(((raw << 4) as i16) >> 4)
}

/// Format 8 stores differences; each signal starts from its initial value.
pub(crate) fn integrate_differences(diffs: &mut [i32], init_value: i32) {
    let mut acc = init_value;
    for d in diffs.iter_mut() {
        acc = acc.wrapping_add(*d);
        *d = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs samples the way WFDB's writer does (independent of the decoder's bit tricks).
    fn pack_212(samples: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        for pair in samples.chunks(2) {
            let a = (pair[0] & 0xfff) as u32;
            let b = pair.get(1).map_or(0, |b| (*b & 0xfff) as u32);
            out.push((a & 0xff) as u8);
            out.push(((a >> 8) | ((b >> 8) << 4)) as u8);
            if pair.len() == 2 {
                out.push((b & 0xff) as u8);
            }
        }
        out
    }

    #[test]
    fn format_212_round_trips_negative_and_extreme_values() {
        let samples = [0, 1, -1, 2047, -2048, -1000, 995, 1011, -7];
        let bytes = pack_212(&samples);
        assert_eq!(bytes.len() as u64, SignalFormat::F212.bytes_for(9));
        assert_eq!(SignalFormat::F212.samples_in(bytes.len() as u64), 9);
        assert_eq!(SignalFormat::F212.decode(&bytes, 9), samples);
    }

    #[test]
    fn format_212_known_bytes() {
        // 0xE3 0x83 0xF1: first = 0x3E3 = 995, second = 0x8F1 -> -1807.
        assert_eq!(
            SignalFormat::F212.decode(&[0xe3, 0x83, 0xf1], 2),
            vec![995, -1807]
        );
    }

    #[test]
    fn sixteen_bit_formats() {
        let bytes = [0x34, 0x12, 0xff, 0xff, 0x00, 0x80];
        assert_eq!(
            SignalFormat::F16.decode(&bytes, 3),
            vec![0x1234, -1, -32768]
        );
        assert_eq!(
            SignalFormat::F61.decode(&bytes, 3),
            vec![0x3412, -1, 0x0080]
        );
        assert_eq!(
            SignalFormat::F160.decode(&bytes, 3),
            vec![0x1234 - 32768, 32767, 0]
        );
    }

    #[test]
    fn eight_bit_and_wide_formats() {
        assert_eq!(
            SignalFormat::F80.decode(&[0, 128, 255], 3),
            vec![-128, 0, 127]
        );
        let mut d = SignalFormat::F8.decode(&[1, 0xff, 5], 3);
        assert_eq!(d, vec![1, -1, 5]);
        integrate_differences(&mut d, 100);
        assert_eq!(d, vec![101, 100, 105]);
        assert_eq!(
            SignalFormat::F24.decode(&[0xff, 0xff, 0xff, 1, 0, 0x80], 2),
            vec![-1, -(1 << 23) + 1]
        );
        assert_eq!(
            SignalFormat::F32.decode(&[0xfe, 0xff, 0xff, 0xff], 1),
            vec![-2]
        );
    }
}
