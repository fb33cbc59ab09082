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

/// The one gain of a visit whose leads may have been recorded at different
/// gains: the finest of them, coarsened only as far as needed for every
/// lead's largest sample to fit int16.
fn common_gain(leads: &[(String, f64, Vec<i64>)]) -> f64 {
    let finest = leads.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
    let peak_uv = leads
        .iter()
        .map(|(_, g, row)| row.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as f64 * g)
        .fold(0.0, f64::max);
    let needed = peak_uv / f64::from(i16::MAX);
    if finest.is_finite() && finest >= needed {
        finest
    } else {
        needed
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
    // Per lead: gain in uV per LSB and samples with the baseline removed.
    let mut leads: Vec<(String, f64, Vec<i64>)> = Vec::new();
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
        let digital = rec.digital(i).map_err(|source| PlaybackError::Wfdb {
            path: path.clone(),
            source,
        })?;
        let row = digital
            .iter()
            .map(|&d| i64::from(d) - i64::from(spec.baseline))
            .collect();
        leads.push((spec.description.clone(), per_unit / adc_gain, row));
    }
    let gain = common_gain(&leads);
    let mut named = Vec::with_capacity(leads.len());
    for (lead, g, row) in leads {
        let exact = (g - gain).abs() <= 1e-12 * gain;
        let row = row
            .into_iter()
            .map(|v| {
                // Leads recorded at another gain are rescaled to the visit's
                // one gain, within half an LSB of the physical value.
                let v = if exact {
                    v
                } else {
                    (v as f64 * g / gain).round() as i64
                };
                i16::try_from(v).map_err(|_| PlaybackError::Range {
                    path: path.clone(),
                    lead: lead.clone(),
                    value: v,
                })
            })
            .collect::<Result<Vec<i16>, _>>()?;
        named.push((lead, row));
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
    Recording::from_named(named, fs_hz as u32, gain, sex, age)
        .map_err(|source| PlaybackError::Leads { path, source })
}
