//! Records: a header plus the digital samples of every signal, read from
//! one or more (possibly multiplexed) signal files next to the header.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::format::{integrate_differences, SignalFormat};
use crate::header::Header;

/// A WFDB record loaded into memory.
#[derive(Debug, Clone)]
pub struct Record {
    /// Record path without extension, used in error messages.
    path: PathBuf,
    header: Header,
    /// Digital samples per signal. A signal with `samples_per_frame = k`
    /// holds `k` samples per frame (its rate is `k * fs_hz`).
    samples: Vec<Vec<i32>>,
}

impl Record {
    /// Reads `<path>.hea` and its signal files. `path` is the record path
    /// without extension (a trailing `.hea` is tolerated).
    pub fn read(path: impl AsRef<Path>) -> Result<Record, Error> {
        let base = strip_hea(path.as_ref());
        let hea_path = with_extension_appended(&base, "hea");
        let bytes = std::fs::read(&hea_path).map_err(|source| Error::Io {
            path: hea_path.clone(),
            source,
        })?;
        // Comments are sometimes Latin-1; lossy decoding keeps the fields usable.
        let text = String::from_utf8_lossy(&bytes);
        let header = Header::parse(&text).map_err(|source| Error::Header {
            path: hea_path.clone(),
            source,
        })?;
        Record::from_header(header, &base)
    }

    /// Reads the signal files described by an already parsed header.
    /// `record_path` is the record path without extension; signal file
    /// names are resolved relative to its directory.
    pub fn from_header(header: Header, record_path: &Path) -> Result<Record, Error> {
        let path = record_path.to_path_buf();
        if let Some(n) = header.n_segments {
            return Err(Error::Unsupported {
                path,
                message: format!("multi-segment records ({n} segments) are not supported"),
            });
        }
        let dir = record_path.parent().unwrap_or(Path::new(""));
        let mut samples: Vec<Vec<i32>> = vec![Vec::new(); header.signals.len()];
        let mut n_frames_seen: Option<u64> = None;
        for group in group_by_file(&header) {
            let (frames, per_signal) = read_signal_file(&header, &group, dir, &path)?;
            n_frames_seen = Some(n_frames_seen.map_or(frames, |n| n.min(frames)));
            for (&sig, data) in group.iter().zip(per_signal) {
                samples[sig] = data;
            }
        }
        // Without a sample count in the header, files may disagree on length;
        // keep the common prefix so that every signal covers the same time span.
        if header.n_samples.is_none() {
            if let Some(frames) = n_frames_seen {
                for (sig, data) in samples.iter_mut().enumerate() {
                    let spf = header.signals[sig].samples_per_frame as u64;
                    data.truncate((frames * spf) as usize);
                }
            }
        }
        Ok(Record {
            path,
            header,
            samples,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn n_signals(&self) -> usize {
        self.header.signals.len()
    }

    pub fn fs_hz(&self) -> f64 {
        self.header.fs_hz
    }

    /// Number of frames (samples per signal at `fs_hz`) actually read.
    pub fn n_samples(&self) -> usize {
        match (self.samples.first(), self.header.signals.first()) {
            (Some(data), Some(spec)) => data.len() / spec.samples_per_frame as usize,
            _ => self.header.n_samples.unwrap_or(0) as usize,
        }
    }

    /// Lead names (signal descriptions) in signal order.
    pub fn lead_names(&self) -> Vec<&str> {
        self.header.lead_names()
    }

    /// Index of the first signal whose lead name matches, ignoring ASCII case.
    pub fn signal_index(&self, lead_name: &str) -> Option<usize> {
        self.header
            .signals
            .iter()
            .position(|s| s.description.eq_ignore_ascii_case(lead_name))
    }

    /// Digital (ADC) samples of one signal.
    pub fn digital(&self, signal: usize) -> Result<&[i32], Error> {
        self.samples
            .get(signal)
            .map(Vec::as_slice)
            .ok_or(Error::NoSuchSignal {
                signal,
                n_signals: self.samples.len(),
            })
    }

    /// Samples in the signal's own physical units, `(d - baseline) / gain`;
    /// samples holding the format's "invalid" marker become NaN.
    pub fn physical(&self, signal: usize) -> Result<Vec<f32>, Error> {
        self.scaled(signal, 1.0)
    }

    /// Samples in millivolts, converting from the header's voltage units
    /// (mV, uV, V, nV). Fails for non-voltage signals (e.g. mmHg).
    pub fn millivolts(&self, signal: usize) -> Result<Vec<f32>, Error> {
        let spec = self.spec(signal)?;
        let mv_per_unit = mv_per_unit(&spec.units).ok_or_else(|| Error::NotVoltage {
            signal,
            lead: spec.description.clone(),
            units: spec.units.clone(),
        })?;
        self.scaled(signal, mv_per_unit)
    }

    /// Compares each signal's 16-bit sample sum with the header checksum
    /// (signals without a checksum are skipped).
    pub fn verify_checksums(&self) -> Result<(), Error> {
        for (signal, (spec, data)) in self.header.signals.iter().zip(&self.samples).enumerate() {
            let Some(expected) = spec.checksum else {
                continue;
            };
            let sum = data.iter().fold(0i32, |acc, &d| acc.wrapping_add(d));
            // WFDB stores the sum truncated to 16 bits, written signed or unsigned.
            if (sum & 0xffff) != (expected & 0xffff) {
                return Err(Error::Checksum {
                    path: self.path.clone(),
                    signal,
                    lead: spec.description.clone(),
                    expected,
                    actual: i32::from(sum as i16),
                });
            }
        }
        Ok(())
    }

    fn spec(&self, signal: usize) -> Result<&crate::header::SignalSpec, Error> {
        self.header.signals.get(signal).ok_or(Error::NoSuchSignal {
            signal,
            n_signals: self.header.signals.len(),
        })
    }

    fn scaled(&self, signal: usize, factor: f64) -> Result<Vec<f32>, Error> {
        let spec = self.spec(signal)?;
        let invalid = spec.format.invalid_value();
        let baseline = f64::from(spec.baseline);
        let scale = factor / spec.adc_gain;
        Ok(self
            .digital(signal)?
            .iter()
            .map(|&d| {
                if Some(d) == invalid {
                    f32::NAN
                } else {
                    ((f64::from(d) - baseline) * scale) as f32
                }
            })
            .collect())
    }
}

fn mv_per_unit(units: &str) -> Option<f64> {
    match units.to_ascii_lowercase().as_str() {
        "mv" | "" => Some(1.0),
        "uv" | "µv" | "μv" => Some(1e-3),
        "v" => Some(1e3),
        "nv" => Some(1e-6),
        _ => None,
    }
}

/// Signal indices grouped by file, in order of first appearance; within a
/// file the header order is the interleaving order.
fn group_by_file(header: &Header) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, s) in header.signals.iter().enumerate() {
        match by_name.get(s.file_name.as_str()) {
            Some(&g) => groups[g].push(i),
            None => {
                by_name.insert(&s.file_name, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// Reads one signal file; returns the number of frames and each signal's samples.
fn read_signal_file(
    header: &Header,
    group: &[usize],
    dir: &Path,
    record_path: &Path,
) -> Result<(u64, Vec<Vec<i32>>), Error> {
    let first = &header.signals[group[0]];
    let file_path = dir.join(&first.file_name);
    let signal_err = |message: String| Error::Signal {
        path: file_path.clone(),
        message,
    };
    if first.file_name == "-" || first.file_name == "~" {
        return Err(Error::Unsupported {
            path: record_path.to_path_buf(),
            message: format!("signal file {:?} (stdin or null signal)", first.file_name),
        });
    }
    let format: SignalFormat = first.format;
    for &i in group {
        let s = &header.signals[i];
        if s.format != format {
            return Err(signal_err(format!(
                "signals share the file but have formats {} and {}",
                format.code(),
                s.format.code()
            )));
        }
        if s.byte_offset != first.byte_offset {
            return Err(signal_err(format!(
                "signals share the file but have byte offsets {} and {}",
                first.byte_offset, s.byte_offset
            )));
        }
        if s.skew != 0 {
            return Err(Error::Unsupported {
                path: record_path.to_path_buf(),
                message: format!("signal {i} has skew {}, which is not supported", s.skew),
            });
        }
    }
    let frame_len: u64 = group
        .iter()
        .map(|&i| u64::from(header.signals[i].samples_per_frame))
        .sum();

    let bytes = std::fs::read(&file_path).map_err(|source| Error::Io {
        path: file_path.clone(),
        source,
    })?;
    let offset = first.byte_offset;
    let file_len = bytes.len() as u64;
    if file_len < offset {
        return Err(signal_err(format!(
            "file has {file_len} bytes, fewer than its byte offset {offset}"
        )));
    }
    let payload = &bytes[offset as usize..];
    let frames_available = format.samples_in(payload.len() as u64) / frame_len;
    let n_frames = match header.n_samples {
        Some(n) => {
            if n > frames_available {
                let needed = n
                    .checked_mul(frame_len)
                    .map(|s| format.bytes_for(s).saturating_add(offset));
                return Err(signal_err(format!(
                    "truncated: header declares {n} samples per signal ({} bytes in format {}) \
                     but the file has {file_len} bytes ({frames_available} complete frames)",
                    needed.map_or("too many".to_string(), |b| b.to_string()),
                    format.code()
                )));
            }
            n
        }
        None => frames_available,
    };
    // Bounded by the file size checked above, so this cannot overflow memory.
    let stream_len = (n_frames * frame_len) as usize;
    let stream = format.decode(payload, stream_len);

    let spfs: Vec<usize> = group
        .iter()
        .map(|&i| header.signals[i].samples_per_frame as usize)
        .collect();
    let mut per_signal: Vec<Vec<i32>> = spfs
        .iter()
        .map(|&spf| Vec::with_capacity(n_frames as usize * spf))
        .collect();
    for frame in stream.chunks_exact(frame_len as usize) {
        let mut pos = 0;
        for (k, &spf) in spfs.iter().enumerate() {
            per_signal[k].extend_from_slice(&frame[pos..pos + spf]);
            pos += spf;
        }
    }
    if format == SignalFormat::F8 {
        for (k, &i) in group.iter().enumerate() {
            integrate_differences(
                &mut per_signal[k],
                header.signals[i].init_value.unwrap_or(0),
            );
        }
    }
    Ok((n_frames, per_signal))
}

fn strip_hea(path: &Path) -> PathBuf {
    match path.extension() {
        Some(ext) if ext == "hea" => path.with_extension(""),
        _ => path.to_path_buf(),
    }
}

/// Appends `.ext` to the full path (record names may themselves contain dots).
pub(crate) fn with_extension_appended(base: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory unique to one test, removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("ecg-wfdb-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        fn write(&self, name: &str, bytes: &[u8]) {
            std::fs::write(self.0.join(name), bytes).unwrap();
        }
        fn rec(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn le16(values: &[i16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn format_16_with_byte_offset_and_interleaving() {
        let dir = Scratch::new("f16off");
        let mut bytes = vec![0xAAu8; 24]; // stand-in for a .mat preamble
        bytes.extend(le16(&[10, -20, 11, -21, 12, -22]));
        dir.write("r.mat", &bytes);
        dir.write(
            "r.hea",
            b"r 2 500 3\nr.mat 16+24 1000/mV 16 0 10 33 0 I\nr.mat 16+24 2(-4)/uV 16 0 -20 -63 0 II\n",
        );
        let rec = Record::read(dir.rec("r")).unwrap();
        assert_eq!(rec.n_samples(), 3);
        assert_eq!(rec.digital(0).unwrap(), &[10, 11, 12]);
        assert_eq!(rec.digital(1).unwrap(), &[-20, -21, -22]);
        assert_eq!(rec.millivolts(0).unwrap(), vec![0.010, 0.011, 0.012]);
        // (-20 - -4) / 2 uV = -8 uV
        assert_eq!(rec.millivolts(1).unwrap()[0], -0.008);
        rec.verify_checksums().unwrap();
        assert_eq!(rec.signal_index("ii"), Some(1));
    }

    #[test]
    fn sample_count_from_file_size_and_multiple_files() {
        let dir = Scratch::new("nsamp");
        dir.write("a.dat", &le16(&[1, 2, 3, 4, 5]));
        dir.write("b.dat", &[128, 129, 130, 131]);
        dir.write("r.hea", b"r 2 100\na.dat 16\nb.dat 80\n");
        let rec = Record::read(dir.rec("r.hea")).unwrap();
        assert_eq!(rec.n_samples(), 4, "shortest file bounds the record");
        assert_eq!(rec.digital(0).unwrap(), &[1, 2, 3, 4]);
        assert_eq!(rec.digital(1).unwrap(), &[0, 1, 2, 3]);
        assert_eq!(rec.physical(1).unwrap()[3], 3.0 / 200.0);
    }

    #[test]
    fn truncated_missing_and_offset_errors_name_the_file() {
        let dir = Scratch::new("errs");
        dir.write("r.dat", &[1, 2, 3]);
        dir.write("r.hea", b"r 2 360 10\nr.dat 212\nr.dat 212\n");
        let e = Record::read(dir.rec("r")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Signal { .. }), "{msg}");
        assert!(msg.contains("r.dat") && msg.contains("truncated"), "{msg}");

        dir.write("m.hea", b"m 1 360 10\nmissing.dat 16\n");
        let e = Record::read(dir.rec("m")).unwrap_err();
        assert!(
            matches!(e, Error::Io { .. }) && e.to_string().contains("missing.dat"),
            "{e}"
        );

        dir.write("o.dat", &[0; 4]);
        dir.write("o.hea", b"o 1 360\no.dat 16+8\n");
        let e = Record::read(dir.rec("o")).unwrap_err();
        assert!(e.to_string().contains("byte offset 8"), "{e}");

        let e = Record::read(dir.rec("absent")).unwrap_err();
        assert!(e.to_string().contains("absent.hea"), "{e}");
    }

    #[test]
    fn invalid_samples_become_nan_and_checksums_are_checked() {
        let dir = Scratch::new("nan");
        dir.write("r.dat", &le16(&[-32768, 400]));
        dir.write("r.hea", b"r 1 360 2\nr.dat 16 200 16 0 0 999 0 ECG\n");
        let rec = Record::read(dir.rec("r")).unwrap();
        let mv = rec.millivolts(0).unwrap();
        assert!(mv[0].is_nan());
        assert_eq!(mv[1], 2.0);
        let e = rec.verify_checksums().unwrap_err();
        assert!(matches!(e, Error::Checksum { expected: 999, .. }), "{e}");
    }

    #[test]
    fn format_8_and_multi_sample_frames() {
        let dir = Scratch::new("f8");
        dir.write("r.dat", &[1, 2, 0xff, 3]);
        // Signal 0 has 2 samples per frame, signal 1 one: frames are [a a b].
        dir.write("s.dat", &le16(&[1, 2, 9, 3, 4, 8]));
        dir.write("r.hea", b"r 1 100 4\nr.dat 8 100 8 0 50\n");
        dir.write("s.hea", b"s 2 100 2\ns.dat 16x2\ns.dat 16\n");
        let rec = Record::read(dir.rec("r")).unwrap();
        assert_eq!(rec.digital(0).unwrap(), &[51, 53, 52, 55]);
        let rec = Record::read(dir.rec("s")).unwrap();
        assert_eq!(rec.digital(0).unwrap(), &[1, 2, 3, 4]);
        assert_eq!(rec.digital(1).unwrap(), &[9, 8]);
        assert_eq!(rec.n_samples(), 2);
    }

    #[test]
    fn non_voltage_units_are_refused_for_millivolts() {
        let dir = Scratch::new("units");
        dir.write("r.dat", &le16(&[100]));
        dir.write("r.hea", b"r 1 125 1\nr.dat 16 1/mmHg 16 0 0 0 0 ABP\n");
        let rec = Record::read(dir.rec("r")).unwrap();
        assert!(matches!(rec.millivolts(0), Err(Error::NotVoltage { .. })));
        assert_eq!(rec.physical(0).unwrap(), vec![100.0]);
        assert!(matches!(rec.digital(3), Err(Error::NoSuchSignal { .. })));
    }
}
