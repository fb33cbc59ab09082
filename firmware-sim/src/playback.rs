//! Playback of a WFDB record as one device visit.

use std::path::Path;

use ecg_wire::Sex;

use crate::visit::{Recording, VisitError};

/// Why a record cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum PlaybackError {
    #[error("reading {path}: {source}")]
    Wfdb {
        path: String,
        #[source]
        source: ecg_wfdb::Error,
    },
    #[error("{path}: sampling rate {fs_hz} Hz is not a whole number within 50..=10000")]
    SampleRate { path: String, fs_hz: f64 },
    #[error("{path}: lead {lead} has units {units:?}, not a voltage")]
    Units {
        path: String,
        lead: String,
        units: String,
    },
    #[error(
        "{path}: leads have different gains ({first} and {other} uV/LSB); one visit has one gain"
    )]
    MixedGain {
        path: String,
        first: f64,
        other: f64,
    },
    #[error("{path}: lead {lead} sample {value} (baseline removed) does not fit int16")]
    Range {
        path: String,
        lead: String,
        value: i64,
    },
    #[error("{path}: {source}")]
    Leads {
        path: String,
        #[source]
        source: VisitError,
    },
}

fn uv_per_unit(units: &str) -> Option<f64> {
    match units.trim() {
        "mV" | "" => Some(1000.0), // WFDB's default unit is mV
        "uV" | "\u{b5}V" => Some(1.0),
        "V" => Some(1e6),
        "nV" => Some(1e-3),
        _ => None,
    }
}

/// Reads a record (path without extension, as WFDB tools take it) into a
/// recording: digital samples minus baseline, gain in uV per LSB.
pub fn load(record: &Path) -> Result<Recording, PlaybackError> {
    let path = record.display().to_string();
    let rec = ecg_wfdb::Record::read(record).map_err(|source| PlaybackError::Wfdb {
        path: path.clone(),
        source,
    })?;
    let fs_hz = rec.fs_hz();
    if !(fs_hz.fract() == 0.0 && (50.0..=10_000.0).contains(&fs_hz)) {
        return Err(PlaybackError::SampleRate { path, fs_hz });
    }
    let mut gain: Option<f64> = None;
    let mut named = Vec::new();
    for (i, spec) in rec.header().signals.iter().enumerate() {
        let per_unit = uv_per_unit(&spec.units).ok_or_else(|| PlaybackError::Units {
            path: path.clone(),
            lead: spec.description.clone(),
            units: spec.units.clone(),
        })?;
        // WFDB: a gain of 0 means the default of 200 adu per unit.
        let adc_gain = if spec.adc_gain > 0.0 {
            spec.adc_gain
        } else {
            200.0
        };
        let g = per_unit / adc_gain;
        match gain {
            None => gain = Some(g),
            Some(first) if (first - g).abs() > 1e-9 * first => {
                return Err(PlaybackError::MixedGain {
                    path,
                    first,
                    other: g,
                })
            }
            _ => {}
        }
        let digital = rec.digital(i).map_err(|source| PlaybackError::Wfdb {
            path: path.clone(),
            source,
        })?;
        let row = digital
            .iter()
            .map(|&d| {
                let v = i64::from(d) - i64::from(spec.baseline);
                i16::try_from(v).map_err(|_| PlaybackError::Range {
                    path: path.clone(),
                    lead: spec.description.clone(),
                    value: v,
                })
            })
            .collect::<Result<Vec<i16>, _>>()?;
        named.push((spec.description.clone(), row));
    }
    let sex = match rec.header().sex() {
        Some(ecg_wfdb::header::Sex::Male) => Sex::Male,
        Some(ecg_wfdb::header::Sex::Female) => Sex::Female,
        _ => Sex::Unknown,
    };
    let age = rec
        .header()
        .age_years()
        .filter(|a| (0.0..=130.0).contains(a))
        .map(|a| a.round() as u8);
    Recording::from_named(named, fs_hz as u32, gain.unwrap_or(1.0), sex, age)
        .map_err(|source| PlaybackError::Leads { path, source })
}
