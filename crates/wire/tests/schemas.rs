//! The JSON Schemas in schemas/ and the Rust types must describe the same
//! messages: every example validates and round-trips through its type, random
//! messages built by the types validate against the schemas, and both sides
//! refuse the same representative bad inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ecg_wire::{
    Alert, AlertAck, AlertId, CentreId, Chunk, ClinicId, DeadLetter, DeadLetterCode, DeviceId,
    Lead, LeadSet, LeadSt, Message, PatientPseudonym, ResultStatus, SamplesDigest, Sex, Territory,
    Verdict, VisitEnd, VisitId, VisitMeta, VisitResult,
};
use proptest::prelude::*;
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(schemas_dir().join(schema_file)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{schema_file} is not a valid schema: {e}"))
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn check_example<M: Message + PartialEq + std::fmt::Debug>(example: &Path) {
    let bytes = std::fs::read(example).unwrap();
    let validator = validator(M::SCHEMA);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    let errors = schema_errors(&validator, &value);
    assert!(errors.is_empty(), "{}: {errors:?}", example.display());

    let message = M::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    let again = message.to_json();
    let again_value: Value = serde_json::from_slice(&again).unwrap();
    let errors = schema_errors(&validator, &again_value);
    assert!(
        errors.is_empty(),
        "{} re-serialised: {errors:?}",
        example.display()
    );
    assert_eq!(M::from_json(&again).unwrap(), message);
}

#[test]
fn every_example_validates_and_round_trips_through_its_type() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(schemas_dir().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        match stem.as_str() {
            "visit-meta" => check_example::<VisitMeta>(&path),
            "visit-end" => check_example::<VisitEnd>(&path),
            "visit-result" => check_example::<VisitResult>(&path),
            "alert" => check_example::<Alert>(&path),
            "alert-ack" => check_example::<AlertAck>(&path),
            "dead-letter" => check_example::<DeadLetter>(&path),
            // A file of the pipeline's, not a message: its type is
            // ecg-pipeline's, whose tests parse this example.
            "quarantine-line" => {
                let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let errors = schema_errors(&validator("quarantine-line.schema.json"), &value);
                assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            }
            other => panic!("example {other} has no message type"),
        }
        seen.push(stem);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "alert",
            "alert-ack",
            "dead-letter",
            "quarantine-line",
            "visit-end",
            "visit-meta",
            "visit-result"
        ]
    );
}

#[test]
fn every_schema_has_an_example() {
    for entry in std::fs::read_dir(schemas_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".schema.json") {
            assert!(
                schemas_dir().join(format!("examples/{stem}.json")).exists(),
                "{name} has no example"
            );
        }
    }
}

/// The dead-letter example's payload was made by an independent
/// implementation of the byte table (Python, zlib's CRC-32) and corrupted by
/// one bit; our decoder must refuse it with exactly the reason the example states.
#[test]
fn dead_letter_example_payload_matches_the_documented_layout() {
    let bytes = std::fs::read(schemas_dir().join("examples/dead-letter.json")).unwrap();
    let dead = DeadLetter::from_json(&bytes).unwrap();
    let payload = dead.payload_prefix().unwrap();
    let err = Chunk::decode(&payload).unwrap_err();
    assert_eq!(err.to_string(), dead.reason);
    // Undo the one-bit corruption: now it decodes to what the example describes.
    let mut fixed = payload.clone();
    fixed[40] ^= 0x04;
    let chunk = Chunk::decode(&fixed).unwrap();
    assert_eq!(chunk.seq(), 3);
    assert_eq!(chunk.first_sample(), 1500);
    assert_eq!(chunk.samples(), &[100]);
    assert_eq!(chunk.leads().iter().collect::<Vec<_>>(), vec![Lead::I]);
}

fn example_value(stem: &str) -> Value {
    let text =
        std::fs::read_to_string(schemas_dir().join(format!("examples/{stem}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Edits an example and checks that the schema and the type agree on it.
fn both_agree<M: Message>(stem: &str, edit: impl FnOnce(&mut Value), accepted: bool) {
    let mut value = example_value(stem);
    edit(&mut value);
    let schema_ok = schema_errors(&validator(M::SCHEMA), &value).is_empty();
    let rust = M::from_json(value.to_string().as_bytes());
    assert_eq!(schema_ok, accepted, "schema on {stem}: {value}");
    assert_eq!(
        rust.is_ok(),
        accepted,
        "type on {stem}: {value} -> {:?}",
        rust.err()
    );
}

#[test]
fn schema_and_types_agree_on_strictness_and_bad_values() {
    // Strict inputs: an extra field (here a raw identifier) is refused.
    both_agree::<VisitMeta>(
        "visit-meta",
        |v| v["patient_name"] = "Zhang San".into(),
        false,
    );
    both_agree::<VisitEnd>("visit-end", |v| v["extra"] = 1.into(), false);
    both_agree::<AlertAck>("alert-ack", |v| v["note"] = "ok".into(), false);
    // Tolerant outputs: a field added later in v1 is ignored.
    both_agree::<Alert>("alert", |v| v["ward"] = "CCU".into(), true);
    both_agree::<VisitResult>("visit-result", |v| v["next_step"] = "x".into(), true);
    both_agree::<DeadLetter>("dead-letter", |v| v["worker"] = "w1".into(), true);
    // Values.
    both_agree::<VisitMeta>(
        "visit-meta",
        |v| v["patient_pseudonym"] = "110101199003077777".into(),
        false,
    );
    both_agree::<VisitMeta>("visit-meta", |v| v["device_id"] = "dev/1".into(), false);
    both_agree::<VisitMeta>("visit-meta", |v| v["leads"] = serde_json::json!([]), false);
    both_agree::<VisitMeta>(
        "visit-meta",
        |v| v["leads"] = serde_json::json!(["I", "avr"]),
        false,
    );
    both_agree::<VisitMeta>("visit-meta", |v| v["fs_hz"] = 20.into(), false);
    both_agree::<VisitMeta>("visit-meta", |v| v["gain_uv_per_lsb"] = 0.into(), false);
    both_agree::<VisitMeta>("visit-meta", |v| v["age_years"] = 131.into(), false);
    both_agree::<VisitMeta>(
        "visit-meta",
        |v| v["acquired_at"] = "yesterday".into(),
        false,
    );
    both_agree::<VisitMeta>(
        "visit-meta",
        |v| v["visit_id"] = "0F8FAD5B-D9CB-469F-A165-70867728950E".into(),
        false,
    );
    both_agree::<VisitMeta>(
        "visit-meta",
        |v| {
            v.as_object_mut().unwrap().remove("age_years");
        },
        true,
    );
    both_agree::<VisitEnd>("visit-end", |v| v["samples_sha256"] = "ABCD".into(), false);
    both_agree::<VisitEnd>("visit-end", |v| v["n_chunks"] = 0.into(), false);
    both_agree::<VisitResult>("visit-result", |v| v["status"] = "maybe".into(), false);
    both_agree::<VisitResult>(
        "visit-result",
        |v| v["territories"] = serde_json::json!(["apical"]),
        false,
    );
    both_agree::<Alert>(
        "alert",
        |v| v["leads"]["V10"] = serde_json::json!({"st_j_uv": 1, "st_j60_uv": 1}),
        false,
    );
    both_agree::<Alert>(
        "alert",
        |v| v["leads"]["V1"] = serde_json::json!({"st_j_uv": 1.5, "st_j60_uv": 1}),
        false,
    );
    both_agree::<Alert>("alert", |v| v["territories"] = serde_json::json!([]), false);
    both_agree::<Alert>(
        "alert",
        |v| v["territories"] = serde_json::json!(["inferior", "inferior"]),
        false,
    );
    both_agree::<VisitResult>("visit-result", |v| v["status"] = "no_stemi".into(), false);
    both_agree::<Alert>(
        "alert",
        |v| v["reasons"] = serde_json::json!(["line\nbreak"]),
        false,
    );
    both_agree::<AlertAck>("alert-ack", |v| v["by"] = "".into(), false);
    both_agree::<AlertAck>("alert-ack", |v| v["verdict"] = "maybe".into(), false);
    both_agree::<AlertAck>("alert-ack", |v| v["verdict"] = "false_alarm".into(), true);
    both_agree::<AlertAck>("alert-ack", |v| v["verdict"] = Value::Null, true);
    both_agree::<DeadLetter>(
        "dead-letter",
        |v| v["reason_code"] = "whatever".into(),
        false,
    );
}

// ---- random messages: round trip through JSON and validate against the schema

fn arb_time() -> impl Strategy<Value = OffsetDateTime> {
    (
        0i64..4_000_000_000,
        0u32..1_000_000_000,
        -12i8..=14,
        prop::sample::select(vec![0i8, 30, 45]),
    )
        .prop_map(|(secs, nanos, h, m)| {
            let offset = UtcOffset::from_hms(h, if h < 0 { -m } else { m }, 0).unwrap();
            (OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(nanos.into()))
            .to_offset(offset)
        })
}

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn arb_uuid_bytes() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>().prop_filter("non-nil", |b| b.iter().any(|x| *x != 0))
}

fn arb_pseudonym() -> impl Strategy<Value = PatientPseudonym> {
    (any::<u16>(), any::<[u8; 16]>()).prop_map(|(k, d)| PatientPseudonym::from_digest(k, &d))
}

fn arb_sex() -> impl Strategy<Value = Sex> {
    prop::sample::select(vec![Sex::Male, Sex::Female, Sex::Unknown])
}

fn arb_territories() -> impl Strategy<Value = Vec<Territory>> {
    prop::sample::subsequence(
        vec![
            Territory::Septal,
            Territory::Anterior,
            Territory::Lateral,
            Territory::Inferior,
            Territory::Posterior,
            Territory::RightVentricular,
        ],
        0..=6,
    )
}

fn arb_reasons() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[^\\p{Cc}]{1,80}", 0..5)
}

/// Dyadic values print and parse back exactly in JSON.
fn arb_dyadic(max: u32) -> impl Strategy<Value = f64> {
    (1u32..=max * 64).prop_map(|n| f64::from(n) / 64.0)
}

fn arb_meta() -> impl Strategy<Value = VisitMeta> {
    (
        (
            arb_name(),
            arb_name(),
            arb_uuid_bytes(),
            arb_pseudonym(),
            arb_sex(),
        ),
        (
            prop::option::of(0u8..=130),
            1u32..=LeadSet::KNOWN_BITS,
            50u32..=10_000,
            arb_dyadic(1000),
        ),
        (arb_time(), 1u16..=2000, "[!-~]{1,64}"),
    )
        .prop_map(
            |((device, clinic, visit, pseudo, sex), (age, mask, fs_hz, gain), (at, chunk, fw))| {
                VisitMeta {
                    device_id: DeviceId::new(device).unwrap(),
                    clinic_id: ClinicId::new(clinic).unwrap(),
                    visit_id: VisitId::from_bytes(visit).unwrap(),
                    patient_pseudonym: pseudo,
                    sex,
                    age_years: age,
                    leads: LeadSet::from_mask(mask).unwrap(),
                    fs_hz,
                    gain_uv_per_lsb: gain,
                    acquired_at: at,
                    chunk_samples: chunk,
                    firmware_version: fw,
                }
            },
        )
}

fn arb_end() -> impl Strategy<Value = VisitEnd> {
    (
        arb_uuid_bytes(),
        1u32..1000,
        any::<[u8; 32]>(),
        0u32..1_000_000,
    )
        .prop_map(|(v, n, d, extra)| VisitEnd {
            visit_id: VisitId::from_bytes(v).unwrap(),
            n_chunks: n,
            n_samples: n.saturating_add(extra),
            samples_sha256: SamplesDigest(d),
        })
}

fn arb_result() -> impl Strategy<Value = VisitResult> {
    (
        arb_uuid_bytes(),
        prop::sample::select(vec![
            ResultStatus::StemiSuspected,
            ResultStatus::NoStemi,
            ResultStatus::PoorSignalRepeat,
            ResultStatus::Incomplete,
        ]),
        arb_reasons(),
        arb_territories(),
        arb_uuid_bytes(),
        arb_time(),
    )
        .prop_map(|(v, status, reasons, territories, alert, at)| VisitResult {
            visit_id: VisitId::from_bytes(v).unwrap(),
            status,
            reasons,
            territories,
            alert_id: (status == ResultStatus::StemiSuspected)
                .then(|| AlertId::from_bytes(alert).unwrap()),
            decided_at: at,
        })
}

fn arb_alert() -> impl Strategy<Value = Alert> {
    (
        (
            arb_uuid_bytes(),
            arb_uuid_bytes(),
            arb_name(),
            arb_name(),
            arb_name(),
            arb_pseudonym(),
        ),
        (
            arb_sex(),
            prop::option::of(0u8..=130),
            arb_territories().prop_filter("non-empty", |t| !t.is_empty()),
        ),
        prop::collection::btree_map(
            prop::sample::select(Lead::ALL.to_vec()),
            (any::<i16>(), any::<i16>()),
            0..12,
        ),
        (
            arb_reasons(),
            // Heart rates from 1 bpm, as the types and the schema allow.
            prop::option::of((64u32..=300 * 64).prop_map(|n| f64::from(n) / 64.0)),
            arb_time(),
            0u32..600_000,
            any::<bool>(),
            any::<u8>(),
        ),
    )
        .prop_map(
            |(
                (a, v, d, c, centre, p),
                (sex, age, territories),
                leads,
                (reasons, hr, acquired, ms, early, esc),
            )| {
                let detected = acquired + time::Duration::milliseconds(ms.into());
                Alert {
                    alert_id: AlertId::from_bytes(a).unwrap(),
                    visit_id: VisitId::from_bytes(v).unwrap(),
                    device_id: DeviceId::new(d).unwrap(),
                    clinic_id: ClinicId::new(c).unwrap(),
                    centre_id: CentreId::new(centre).unwrap(),
                    patient_pseudonym: p,
                    sex,
                    age_years: age,
                    territories,
                    leads: leads
                        .into_iter()
                        .map(|(lead, (j, j60))| {
                            (
                                lead,
                                LeadSt {
                                    st_j_uv: j.into(),
                                    st_j60_uv: j60.into(),
                                },
                            )
                        })
                        .collect::<BTreeMap<_, _>>(),
                    reasons,
                    heart_rate_bpm: hr,
                    acquired_at: acquired,
                    detected_at: detected,
                    published_at: detected + time::Duration::milliseconds(7),
                    early,
                    escalation_level: esc,
                }
            },
        )
}

fn arb_ack() -> impl Strategy<Value = AlertAck> {
    (
        arb_uuid_bytes(),
        "[^\\p{Cc}]{1,128}",
        arb_time(),
        prop::option::of(prop::sample::select(vec![
            Verdict::Confirmed,
            Verdict::FalseAlarm,
        ])),
    )
        .prop_map(|(a, by, at, verdict)| AlertAck {
            alert_id: AlertId::from_bytes(a).unwrap(),
            by,
            at,
            verdict,
        })
}

fn arb_dead_letter() -> impl Strategy<Value = DeadLetter> {
    (
        ".{0,300}",
        prop::collection::vec(any::<u8>(), 0..3000),
        prop::sample::select(vec![
            DeadLetterCode::BadTopic,
            DeadLetterCode::BadChunk,
            DeadLetterCode::BadJson,
            DeadLetterCode::InvalidMessage,
            DeadLetterCode::TopicMismatch,
            DeadLetterCode::UnknownVisit,
            DeadLetterCode::InconsistentVisit,
            DeadLetterCode::ChecksumMismatch,
            DeadLetterCode::TooLarge,
        ]),
        "[^\\p{Cc}]{1,600}",
        arb_time(),
    )
        .prop_map(|(topic, payload, code, reason, at)| {
            DeadLetter::new(&topic, &payload, code, &reason, at)
        })
}

fn round_trips<M: Message + PartialEq + std::fmt::Debug>(
    message: &M,
    validator: &jsonschema::Validator,
) -> Result<(), TestCaseError> {
    message
        .validate()
        .map_err(|e| TestCaseError::fail(format!("generated invalid message: {e}")))?;
    let json = message.to_json();
    let value: Value = serde_json::from_slice(&json).unwrap();
    let errors = schema_errors(validator, &value);
    prop_assert!(
        errors.is_empty(),
        "{} fails its schema: {:?}",
        value,
        errors
    );
    prop_assert_eq!(&M::from_json(&json).unwrap(), message);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn meta_round_trips(m in arb_meta()) {
        round_trips(&m, &validator(VisitMeta::SCHEMA))?;
    }

    #[test]
    fn end_round_trips(m in arb_end()) {
        round_trips(&m, &validator(VisitEnd::SCHEMA))?;
    }

    #[test]
    fn result_round_trips(m in arb_result()) {
        round_trips(&m, &validator(VisitResult::SCHEMA))?;
    }

    #[test]
    fn alert_round_trips(m in arb_alert()) {
        round_trips(&m, &validator(Alert::SCHEMA))?;
    }

    #[test]
    fn ack_round_trips(m in arb_ack()) {
        round_trips(&m, &validator(AlertAck::SCHEMA))?;
    }

    #[test]
    fn dead_letter_round_trips(m in arb_dead_letter()) {
        round_trips(&m, &validator(DeadLetter::SCHEMA))?;
    }

    #[test]
    fn arbitrary_json_bytes_give_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = VisitMeta::from_json(&bytes);
        let _ = VisitEnd::from_json(&bytes);
        let _ = AlertAck::from_json(&bytes);
        let _ = Alert::from_json(&bytes);
    }
}

#[test]
fn samples_digest_is_sha256_of_int16_le_lead_by_lead() {
    // Two leads [1, -1] and [256]: bytes 01 00 ff ff 00 01.
    let digest = SamplesDigest::of_leads([&[1i16, -1][..], &[256][..]]);
    let reference = {
        use sha2::{Digest, Sha256};
        let d: [u8; 32] = Sha256::digest([0x01, 0x00, 0xff, 0xff, 0x00, 0x01]).into();
        d
    };
    assert_eq!(digest.0, reference);
    // Known vector: SHA-256 of the empty input.
    assert_eq!(
        SamplesDigest::of_leads(std::iter::empty::<&[i16]>()).to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
