//! Writing a record: a `.hea` header and one format-16 `.dat` file with
//! every signal multiplexed, as PhysioNet's own tools read it. Only what an
//! export of a resting ECG needs: one segment, one sample per frame, int16
//! samples with a common gain.

use std::fmt::Write as _;

/// One signal to write.
#[derive(Debug, Clone, Copy)]
pub struct SignalOut<'a> {
    /// The lead name, the signal line's description.
    pub name: &'a str,
    pub samples: &'a [i16],
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("record name {0:?}: letters, digits and _ only")]
    BadName(String),
    #[error("signal {index} has {got} samples, signal 0 has {want}")]
    UnequalLengths {
        index: usize,
        got: usize,
        want: usize,
    },
    #[error("{0}")]
    Invalid(&'static str),
}

/// A record's two files, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Format16Record {
    /// `<name>.hea`
    pub header: String,
    /// `<name>.dat`: frames of little-endian int16, signal after signal.
    pub dat: Vec<u8>,
}

/// Encodes `signals` (all of one length) sampled at `fs_hz`, with
/// `adc_gain_per_mv` ADC units per millivolt and baseline 0, as the record
/// `name`; `comments` become `#` lines after the signal lines (line breaks
/// in them are replaced by spaces). Each signal line carries its first
/// sample and the 16-bit checksum, so a reader can verify the file.
/// Format 16 reserves -32768 as "no sample": a reader converting to
/// physical units shows it as missing, the digital value is kept.
pub fn encode_format16(
    name: &str,
    fs_hz: f64,
    adc_gain_per_mv: f64,
    signals: &[SignalOut<'_>],
    comments: &[String],
) -> Result<Format16Record, WriteError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(WriteError::BadName(name.to_owned()));
    }
    if signals.is_empty() {
        return Err(WriteError::Invalid("no signals"));
    }
    if !(fs_hz.is_finite() && fs_hz > 0.0) {
        return Err(WriteError::Invalid("sampling frequency must be > 0"));
    }
    if !(adc_gain_per_mv.is_finite() && adc_gain_per_mv > 0.0) {
        return Err(WriteError::Invalid("gain must be > 0"));
    }
    let n = signals[0].samples.len();
    if let Some((index, s)) = signals
        .iter()
        .enumerate()
        .find(|(_, s)| s.samples.len() != n)
    {
        return Err(WriteError::UnequalLengths {
            index,
            got: s.samples.len(),
            want: n,
        });
    }
    let mut header = format!("{name} {} {fs_hz} {n}\n", signals.len());
    for s in signals {
        let checksum = s.samples.iter().fold(0i16, |acc, &v| acc.wrapping_add(v));
        let first = s.samples.first().copied().unwrap_or(0);
        // Descriptions end the line; a line break in one would start a
        // new (wrong) signal line.
        let desc: String = s
            .name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = writeln!(
            header,
            "{name}.dat 16 {adc_gain_per_mv}(0)/mV 16 0 {first} {checksum} 0 {desc}"
        );
    }
    for c in comments {
        let c: String = c
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect();
        let _ = writeln!(header, "# {c}");
    }
    let mut dat = Vec::with_capacity(n * signals.len() * 2);
    for i in 0..n {
        for s in signals {
            dat.extend_from_slice(&s.samples[i].to_le_bytes());
        }
    }
    Ok(Format16Record { header, dat })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;

    #[test]
    fn round_trips_through_the_reader_bit_for_bit() {
        let a: Vec<i16> = (0..1000)
            .map(|i| ((i * 37) % 2001 - 1000) as i16)
            .chain([i16::MAX, i16::MIN + 1])
            .collect();
        let b: Vec<i16> = a.iter().map(|v| v.wrapping_mul(3)).collect();
        let signals = [
            SignalOut {
                name: "II",
                samples: &a,
            },
            SignalOut {
                name: "V2",
                samples: &b,
            },
        ];
        let comments = vec!["<sex>: M".to_string(), "clinic: c-1\nx".to_string()];
        let rec = encode_format16("visit_1", 500.0, 200.0, &signals, &comments).unwrap();
        let dir = std::env::temp_dir().join(format!("wfdb-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("visit_1.hea"), &rec.header).unwrap();
        std::fs::write(dir.join("visit_1.dat"), &rec.dat).unwrap();
        let back = Record::read(dir.join("visit_1")).unwrap();
        back.verify_checksums().unwrap();
        assert_eq!(back.fs_hz(), 500.0);
        assert_eq!(back.n_samples(), a.len());
        assert_eq!(back.lead_names(), ["II", "V2"]);
        for (i, want) in [&a, &b].into_iter().enumerate() {
            let got: Vec<i16> = back.digital(i).unwrap().iter().map(|&v| v as i16).collect();
            assert_eq!(&got, want);
        }
        // 200 units per mV: 1000 units are 5 mV.
        let mv = back.millivolts(0).unwrap();
        assert!((mv[0] - f32::from(a[0]) / 200.0).abs() < 1e-6);
        assert_eq!(back.header().sex(), Some(crate::Sex::Male));
        assert!(back.header().comments.iter().any(|c| c == "clinic: c-1 x"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        let a = [1i16, 2];
        let b = [1i16];
        fn s(samples: &[i16]) -> SignalOut<'_> {
            SignalOut { name: "I", samples }
        }
        assert!(matches!(
            encode_format16("x", 500.0, 200.0, &[s(&a), s(&b)], &[]),
            Err(WriteError::UnequalLengths { index: 1, .. })
        ));
        assert!(encode_format16("../x", 500.0, 200.0, &[s(&a)], &[]).is_err());
        assert!(encode_format16("x", 0.0, 200.0, &[s(&a)], &[]).is_err());
        assert!(encode_format16("x", 500.0, 200.0, &[], &[]).is_err());
    }
}
