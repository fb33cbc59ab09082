//! `.hea` header files: the record line, one line per signal, and `#`
//! comments (where databases keep demographics and diagnoses).
//!
//! Field syntax follows the WFDB header specification; defaults for omitted
//! fields are the ones the WFDB library applies (fs 250 Hz, gain 200 adu/mV,
//! baseline = ADC zero, units mV).

use crate::error::HeaderParseError;
use crate::format::SignalFormat;

/// Sampling frequency assumed by WFDB when the record line omits it.
const DEFAULT_FS_HZ: f64 = 250.0;
/// Gain assumed by WFDB when a signal line omits it or gives 0 ("uncalibrated").
const DEFAULT_GAIN_ADU_PER_UNIT: f64 = 200.0;

/// Parsed contents of a `.hea` file (single-segment records).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub record_name: String,
    /// `Some(n)` for multi-segment records (`name/n`), which `Record::read` rejects.
    pub n_segments: Option<u32>,
    pub fs_hz: f64,
    pub counter_freq_hz: Option<f64>,
    pub base_counter: Option<f64>,
    /// Samples per signal (frames); `None` when the header omits it, in which
    /// case the reader derives it from the signal file size.
    pub n_samples: Option<u64>,
    pub base_time: Option<String>,
    pub base_date: Option<String>,
    pub signals: Vec<SignalSpec>,
    /// Comment lines without the leading `#`, trimmed, in file order.
    pub comments: Vec<String>,
}

/// One signal line of a header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    pub file_name: String,
    pub format: SignalFormat,
    pub samples_per_frame: u32,
    pub skew: u32,
    /// Bytes to skip at the start of the signal file (the `+N` suffix).
    pub byte_offset: u64,
    /// Analog-to-digital units per physical unit (`units`).
    pub adc_gain: f64,
    /// Digital value corresponding to 0 physical units.
    pub baseline: i32,
    pub units: String,
    pub adc_resolution_bits: u32,
    pub adc_zero: i32,
    pub init_value: Option<i32>,
    pub checksum: Option<i32>,
    pub block_size: Option<u32>,
    /// Lead name for ECGs (e.g. `MLII`, `V1`, `aVR`).
    pub description: String,
}

/// Patient sex as recorded in header comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
}

impl Header {
    /// Parses header text. Lines may end in `\n` or `\r\n`.
    pub fn parse(text: &str) -> Result<Header, HeaderParseError> {
        let mut comments = Vec::new();
        let mut record: Option<RecordLine> = None;
        let mut signals = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let err = |message: String| HeaderParseError {
                line: line_no,
                message,
            };
            let trimmed = raw.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                comments.push(comment.trim().to_string());
                continue;
            }
            // A `#` after fields starts a trailing comment too.
            let content = match trimmed.find('#') {
                Some(pos) => {
                    comments.push(trimmed[pos + 1..].trim().to_string());
                    trimmed[..pos].trim()
                }
                None => trimmed,
            };
            if content.is_empty() {
                continue;
            }
            match &record {
                None => record = Some(parse_record_line(content).map_err(err)?),
                Some(rec) => {
                    // Multi-segment headers list segments (`name length`)
                    // after the record line, never signals: the signals are
                    // in the segments' own headers.
                    if rec.n_segments.is_some() {
                        continue;
                    }
                    if signals.len() >= rec.n_signals {
                        return Err(err(format!(
                            "more signal lines than the {} declared",
                            rec.n_signals
                        )));
                    }
                    signals.push(parse_signal_line(content).map_err(err)?);
                }
            }
        }
        let rec = record.ok_or_else(|| HeaderParseError {
            line: text.lines().count().max(1),
            message: "no record line".into(),
        })?;
        if rec.n_segments.is_none() && signals.len() != rec.n_signals {
            return Err(HeaderParseError {
                line: text.lines().count().max(1),
                message: format!(
                    "record line declares {} signals but {} signal lines follow",
                    rec.n_signals,
                    signals.len()
                ),
            });
        }
        Ok(Header {
            record_name: rec.name,
            n_segments: rec.n_segments,
            fs_hz: rec.fs_hz,
            counter_freq_hz: rec.counter_freq_hz,
            base_counter: rec.base_counter,
            n_samples: rec.n_samples,
            base_time: rec.base_time,
            base_date: rec.base_date,
            signals,
            comments,
        })
    }

    pub fn n_signals(&self) -> usize {
        self.signals.len()
    }

    /// Lead names (signal descriptions) in signal order.
    pub fn lead_names(&self) -> Vec<&str> {
        self.signals
            .iter()
            .map(|s| s.description.as_str())
            .collect()
    }

    /// Patient sex from comments: `<sex>: M` (LUDB), `sex: female` (PTB),
    /// `Sex: Male` (CinC), or the MIT-BIH first comment `# 69 M ...`.
    pub fn sex(&self) -> Option<Sex> {
        if let Some(value) = self.comment_value("sex") {
            return parse_sex(value);
        }
        self.mit_age_sex().and_then(|(_, sex)| sex)
    }

    /// Patient age in years from comments (`<age>: 50`, `age: 81`,
    /// `Age: 74`, MIT-BIH `# 69 M ...`); `?`, `NaN`, `n/a` give `None`.
    pub fn age_years(&self) -> Option<f32> {
        if let Some(value) = self.comment_value("age") {
            return parse_age(value);
        }
        self.mit_age_sex().and_then(|(age, _)| age)
    }

    /// Value of the first `key: value` comment whose key matches
    /// case-insensitively, ignoring LUDB's angle brackets.
    fn comment_value(&self, key: &str) -> Option<&str> {
        self.comments.iter().find_map(|c| {
            let (k, v) = c.split_once(':')?;
            let k = k
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            k.eq_ignore_ascii_case(key).then_some(v.trim())
        })
    }

    /// MIT-BIH headers put `age sex ...` as the first comment's first two tokens.
    fn mit_age_sex(&self) -> Option<(Option<f32>, Option<Sex>)> {
        let first = self.comments.first()?;
        let mut tokens = first.split_whitespace();
        let age_tok = tokens.next()?;
        let sex_tok = tokens.next()?;
        let age_ok = age_tok == "?" || age_tok.parse::<f32>().is_ok();
        let sex_ok = matches!(sex_tok, "M" | "F" | "?");
        (age_ok && sex_ok).then(|| (parse_age(age_tok), parse_sex(sex_tok)))
    }
}

fn parse_sex(value: &str) -> Option<Sex> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "m" | "male" => Some(Sex::Male),
        "f" | "female" => Some(Sex::Female),
        _ => None,
    }
}

fn parse_age(value: &str) -> Option<f32> {
    // Plausible human ages only: databases use 0 or sentinels like -1 / 999 for unknown
    // inconsistently, and a negative age is never real.
    let age: f32 = value.trim().parse().ok()?;
    (age.is_finite() && (0.0..=130.0).contains(&age)).then_some(age)
}

struct RecordLine {
    name: String,
    n_segments: Option<u32>,
    n_signals: usize,
    fs_hz: f64,
    counter_freq_hz: Option<f64>,
    base_counter: Option<f64>,
    n_samples: Option<u64>,
    base_time: Option<String>,
    base_date: Option<String>,
}

fn parse_record_line(line: &str) -> Result<RecordLine, String> {
    let mut fields = line.split_whitespace();
    let name_field = fields.next().ok_or("empty record line")?;
    let (name, n_segments) = match name_field.split_once('/') {
        Some((name, segs)) => (
            name,
            Some(
                segs.parse::<u32>()
                    .map_err(|_| format!("bad segment count {segs:?}"))?,
            ),
        ),
        None => (name_field, None),
    };
    let n_signals_field = fields
        .next()
        .ok_or("record line lacks the number of signals")?;
    let n_signals: usize = n_signals_field
        .parse()
        .map_err(|_| format!("bad number of signals {n_signals_field:?}"))?;
    // No real record has more; the cap keeps hostile headers from
    // provoking huge allocations later.
    if n_signals > 4096 {
        return Err(format!("implausible number of signals {n_signals}"));
    }
    let mut rec = RecordLine {
        name: name.to_string(),
        n_segments,
        n_signals,
        fs_hz: DEFAULT_FS_HZ,
        counter_freq_hz: None,
        base_counter: None,
        n_samples: None,
        base_time: None,
        base_date: None,
    };
    if let Some(freq) = fields.next() {
        // fs[/counter_freq[(base_counter)]]
        let (fs, counter) = match freq.split_once('/') {
            Some((fs, counter)) => (fs, Some(counter)),
            None => (freq, None),
        };
        rec.fs_hz =
            parse_positive_f64(fs).ok_or_else(|| format!("bad sampling frequency {fs:?}"))?;
        if let Some(counter) = counter {
            let (cf, base) = split_parenthesised(counter)
                .ok_or_else(|| format!("bad counter frequency {counter:?}"))?;
            rec.counter_freq_hz = Some(
                parse_positive_f64(cf).ok_or_else(|| format!("bad counter frequency {cf:?}"))?,
            );
            if let Some(base) = base {
                rec.base_counter = Some(
                    base.parse::<f64>()
                        .ok()
                        .filter(|b| b.is_finite())
                        .ok_or_else(|| format!("bad base counter {base:?}"))?,
                );
            }
        }
    }
    if let Some(n) = fields.next() {
        rec.n_samples = Some(
            n.parse::<u64>()
                .map_err(|_| format!("bad number of samples {n:?}"))?,
        );
    }
    rec.base_time = fields.next().map(str::to_string);
    rec.base_date = fields.next().map(str::to_string);
    Ok(rec)
}

fn parse_signal_line(line: &str) -> Result<SignalSpec, String> {
    // The description is free text (may contain spaces), so split off at
    // most 8 leading fields and keep the remainder verbatim.
    let mut rest = line.trim();
    let mut fields: Vec<&str> = Vec::with_capacity(8);
    while fields.len() < 8 && !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    let description = rest.to_string();

    let file_name = fields[0].to_string();
    let format_field = fields.get(1).ok_or("signal line lacks the format")?;
    let (format, samples_per_frame, skew, byte_offset) = parse_format_field(format_field)?;

    let mut spec = SignalSpec {
        file_name,
        format,
        samples_per_frame,
        skew,
        byte_offset,
        adc_gain: DEFAULT_GAIN_ADU_PER_UNIT,
        baseline: 0,
        units: "mV".to_string(),
        adc_resolution_bits: format.default_resolution_bits(),
        adc_zero: 0,
        init_value: None,
        checksum: None,
        block_size: None,
        description,
    };
    let mut explicit_baseline = None;
    if let Some(gain_field) = fields.get(2) {
        let (gain_part, units) = match gain_field.split_once('/') {
            Some((g, u)) => (g, Some(u)),
            None => (*gain_field, None),
        };
        let (gain, baseline) =
            split_parenthesised(gain_part).ok_or_else(|| format!("bad gain {gain_field:?}"))?;
        let gain: f64 = gain
            .parse()
            .ok()
            .filter(|g: &f64| g.is_finite() && *g >= 0.0)
            .ok_or_else(|| format!("bad gain {gain_field:?}"))?;
        if gain > 0.0 {
            spec.adc_gain = gain;
        }
        if let Some(b) = baseline {
            explicit_baseline = Some(parse_i32(b).ok_or_else(|| format!("bad baseline {b:?}"))?);
        }
        if let Some(u) = units {
            spec.units = u.to_string();
        }
    }
    if let Some(res) = fields.get(3) {
        spec.adc_resolution_bits = res
            .parse::<u32>()
            .ok()
            .filter(|r| *r <= 32)
            .ok_or_else(|| format!("bad ADC resolution {res:?}"))?;
    }
    if let Some(zero) = fields.get(4) {
        spec.adc_zero = parse_i32(zero).ok_or_else(|| format!("bad ADC zero {zero:?}"))?;
    }
    spec.baseline = explicit_baseline.unwrap_or(spec.adc_zero);
    if let Some(init) = fields.get(5) {
        spec.init_value =
            Some(parse_i32(init).ok_or_else(|| format!("bad initial value {init:?}"))?);
    }
    if let Some(sum) = fields.get(6) {
        spec.checksum = Some(parse_i32(sum).ok_or_else(|| format!("bad checksum {sum:?}"))?);
    }
    if let Some(block) = fields.get(7) {
        spec.block_size = Some(
            block
                .parse::<u32>()
                .map_err(|_| format!("bad block size {block:?}"))?,
        );
    }
    Ok(spec)
}

/// `format[xspf][:skew][+offset]`, e.g. `212`, `16+24`, `16x4:2+512`.
fn parse_format_field(field: &str) -> Result<(SignalFormat, u32, u32, u64), String> {
    let bad = || format!("bad format field {field:?}");
    let (rest, offset) = match field.split_once('+') {
        Some((r, o)) => (r, o.parse::<u64>().map_err(|_| bad())?),
        None => (field, 0),
    };
    let (rest, skew) = match rest.split_once(':') {
        Some((r, s)) => (r, s.parse::<u32>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let (code, spf) = match rest.split_once('x') {
        Some((c, s)) => (c, s.parse::<u32>().map_err(|_| bad())?),
        None => (rest, 1),
    };
    if spf == 0 || spf > 4096 {
        return Err(format!("bad samples per frame in {field:?}"));
    }
    let code: u16 = code.parse().map_err(|_| bad())?;
    let format =
        SignalFormat::from_code(code).ok_or_else(|| format!("unsupported signal format {code}"))?;
    Ok((format, spf, skew, offset))
}

/// Splits `value(inner)` into (`value`, `Some(inner)`), or returns (`value`, `None`).
fn split_parenthesised(s: &str) -> Option<(&str, Option<&str>)> {
    match s.split_once('(') {
        Some((value, rest)) => Some((value, Some(rest.strip_suffix(')')?))),
        None => Some((s, None)),
    }
}

fn parse_positive_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
}

/// Integer fields are sometimes written with a decimal point (`1000.0`) or
/// as unsigned 16-bit checksums; accept both.
fn parse_i32(s: &str) -> Option<i32> {
    if let Ok(v) = s.parse::<i64>() {
        return i32::try_from(v).ok();
    }
    let f: f64 = s.parse().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= i32::MAX as f64).then_some(f as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mitdb_style_header() {
        let text = "100 2 360 650000\n\
                    100.dat 212 200 11 1024 995 -22131 0 MLII\n\
                    100.dat 212 200 11 1024 1011 20052 0 V5\n\
                    # 69 M 1085 1629 x1\n# Aldomet, Inderal\n";
        let h = Header::parse(text).unwrap();
        assert_eq!(h.record_name, "100");
        assert_eq!(h.n_signals(), 2);
        assert_eq!(h.fs_hz, 360.0);
        assert_eq!(h.n_samples, Some(650000));
        let s = &h.signals[0];
        assert_eq!(s.format, SignalFormat::F212);
        assert_eq!(s.adc_gain, 200.0);
        assert_eq!(s.baseline, 1024, "baseline defaults to ADC zero");
        assert_eq!(s.units, "mV");
        assert_eq!(s.init_value, Some(995));
        assert_eq!(s.checksum, Some(-22131));
        assert_eq!(h.lead_names(), vec!["MLII", "V5"]);
        assert_eq!(h.sex(), Some(Sex::Male));
        assert_eq!(h.age_years(), Some(69.0));
    }

    #[test]
    fn parses_offsets_baselines_units_and_dates() {
        let text = "A0001 12 500/1000(5) 7500 12-May-2020 12:33:59\n".to_string()
            + &"A0001.mat 16+24 1000(-3)/uV 16 0 28 -1716 0 lead I\n".repeat(12)
            + "#Age: 74\n#Sex: Male\n";
        let h = Header::parse(&text).unwrap();
        assert_eq!(h.fs_hz, 500.0);
        assert_eq!(h.counter_freq_hz, Some(1000.0));
        assert_eq!(h.base_counter, Some(5.0));
        assert_eq!(h.base_time.as_deref(), Some("12-May-2020"));
        assert_eq!(h.base_date.as_deref(), Some("12:33:59"));
        let s = &h.signals[11];
        assert_eq!(s.format, SignalFormat::F16);
        assert_eq!(s.byte_offset, 24);
        assert_eq!(s.baseline, -3);
        assert_eq!(s.units, "uV");
        assert_eq!(s.description, "lead I");
        assert_eq!(h.sex(), Some(Sex::Male));
        assert_eq!(h.age_years(), Some(74.0));
    }

    #[test]
    fn minimal_header_gets_wfdb_defaults() {
        let h = Header::parse("rec 1\nrec.dat 80\n").unwrap();
        assert_eq!(h.fs_hz, 250.0);
        assert_eq!(h.n_samples, None);
        assert_eq!(h.signals[0].adc_gain, 200.0);
        assert_eq!(h.signals[0].description, "");
        assert_eq!(h.sex(), None);
        assert_eq!(h.age_years(), None);
    }

    #[test]
    fn demographics_in_all_dataset_styles() {
        let with = |c: &str| Header::parse(&format!("r 0\n{c}\n")).unwrap();
        assert_eq!(with("#<sex>: F\n#<age>: 50").sex(), Some(Sex::Female));
        assert_eq!(with("#<sex>: F\n#<age>: 50").age_years(), Some(50.0));
        assert_eq!(with("# sex: female\n# age: 81").sex(), Some(Sex::Female));
        assert_eq!(with("# sex: female\n# age: 81").age_years(), Some(81.0));
        assert_eq!(with("# Sex: MALE").sex(), Some(Sex::Male));
        assert_eq!(with("#Age: NaN").age_years(), None);
        assert_eq!(with("#Age: ?").age_years(), None);
        assert_eq!(with("# age: n/a").age_years(), None);
        assert_eq!(with("#Sex: Unknown").sex(), None);
        assert_eq!(with("# ? ? x1").age_years(), None);
    }

    #[test]
    fn rejects_bad_headers_with_line_numbers() {
        let e = Header::parse("r 2 360 100\nr.dat 212 200\n").unwrap_err();
        assert!(e.message.contains("declares 2 signals"), "{e}");
        let e = Header::parse("r 1 360 100\nr.dat 999\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unsupported signal format 999"), "{e}");
        let e = Header::parse("r 1 abc\n").unwrap_err();
        assert!(e.message.contains("sampling frequency"), "{e}");
        assert!(Header::parse("# only a comment\n").is_err());
        assert!(Header::parse("r 1 360 100\nr.dat 16 200(x)/mV\n").is_err());
    }
}
