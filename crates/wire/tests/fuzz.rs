//! Fuzzing of the two decoders that take untrusted device input: the binary
//! chunk and the JSON messages. Arbitrary bytes and mutated valid inputs
//! (bit flips, byte edits, insertions, deletions, truncations, splices,
//! boundary integers; for chunks also with the CRC repaired, so the
//! mutation reaches the checks behind it; for JSON also structural edits of
//! the parsed value). Every input must give a value or a typed error, never
//! a panic; whatever is accepted must be canonical (chunk: re-encodes to
//! the same bytes) or stable (JSON: re-serialises to an equal message that
//! its JSON Schema accepts).
//!
//! `fuzz-corpus/` holds interesting inputs, replayed with their expected
//! outcome in the file name: `ok-*` decodes, `err-<Variant>-*.bin` fails
//! with that [`WireError`] variant, `err-<type>-*.json` is refused by that
//! message type, `any-*.json` by every message type. Case counts are set
//! by `ECG_FUZZ_CASES` (default 30 000 per property).

use std::path::PathBuf;
use std::sync::LazyLock;

use ecg_wire::chunk::{HEADER_LEN, MAGIC};
use ecg_wire::{
    Alert, AlertAck, Chunk, DeadLetter, Message, VisitEnd, VisitMeta, VisitResult, WireError,
};
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("ECG_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000)
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

/// The corpus files with the given extension, sorted by name.
fn corpus(ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("fuzz-corpus/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

static CHUNK_SEEDS: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| corpus("bin").into_iter().map(|(_, b)| b).collect());
static JSON_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    corpus("json")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("any-"))
        .map(|(_, b)| b)
        .collect()
});

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    /// Copies `len` bytes from `from` over `to`.
    Splice {
        from: usize,
        to: usize,
        len: usize,
    },
    /// Writes a boundary value (little-endian u16 or u32) at an offset.
    Boundary(usize, u32, bool),
}

fn edit() -> impl Strategy<Value = Edit> {
    let boundary = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        Just(0x7fff),
        Just(0x8000),
        Just(0xffff),
        Just(0x0001_0000),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(u32::MAX),
        Just(0x0fff),
        Just(0x007f_ffff),
        Just(0x0080_0000),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Edit::Insert(i, v)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(from, to, len)| Edit::Splice {
            from,
            to,
            len
        }),
        (any::<usize>(), boundary, any::<bool>())
            .prop_map(|(i, v, wide)| Edit::Boundary(i, v, wide)),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let n = bytes.len();
    match *e {
        Edit::FlipBit(i, b) if n > 0 => bytes[i % n] ^= 1 << b,
        Edit::Set(i, v) if n > 0 => bytes[i % n] = v,
        Edit::Insert(i, v) => bytes.insert(i % (n + 1), v),
        Edit::Delete(i) if n > 0 => {
            bytes.remove(i % n);
        }
        Edit::Truncate(i) => bytes.truncate(i % (n + 1)),
        Edit::Splice { from, to, len } if n > 0 => {
            let from = from % n;
            let to = to % n;
            let len = len.min(n - from).min(n - to);
            let piece = bytes[from..from + len].to_vec();
            bytes[to..to + len].copy_from_slice(&piece);
        }
        Edit::Boundary(i, v, wide) => {
            let w = if wide { 4 } else { 2 };
            if n >= w {
                let at = i % (n - w + 1);
                bytes[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
        }
        _ => {}
    }
}

/// Recomputes the chunk CRC (bytes 36..40 cover everything else), so that a
/// mutation is judged by the checks after the CRC.
fn repair_crc(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[..36]);
        h.update(&bytes[40..]);
        let crc = h.finalize();
        bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Accepted chunks must be canonical: the decoder accepts exactly one byte
/// string per chunk.
fn check_chunk(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(chunk) = Chunk::decode(bytes) {
        prop_assert_eq!(chunk.to_bytes(), bytes, "accepted a non-canonical chunk");
        prop_assert_eq!(
            chunk.samples().len(),
            chunk.samples_per_lead() * chunk.leads().len()
        );
    }
    Ok(())
}

fn validator(schema: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(schema);
    let text = std::fs::read_to_string(&path).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|e| panic!("{schema}: {e}"))
}

struct Checker {
    check: fn(&[u8], &jsonschema::Validator) -> Result<bool, TestCaseError>,
    schema: jsonschema::Validator,
}

/// Parses as `M`; if accepted, the message must survive a round trip and
/// satisfy its schema (the Rust checks may be stricter, never laxer).
fn check_as<M: Message + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    schema: &jsonschema::Validator,
) -> Result<bool, TestCaseError> {
    match M::from_json(bytes) {
        Err(e) => {
            let _ = e.to_string();
            Ok(false)
        }
        Ok(m) => {
            let json = m.to_json();
            let again = M::from_json(&json);
            prop_assert!(again.is_ok(), "re-serialised message refused: {:?}", again);
            prop_assert_eq!(again.unwrap(), m);
            // Fields a type ignores are skipped unchecked (a lone surrogate
            // escape in one passes), so the input may not parse as a Value;
            // the message itself was re-checked above.
            let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
                return Ok(true);
            };
            let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
            prop_assert!(
                errors.is_empty(),
                "accepted by {} but not by its schema: {:?}\n{}",
                M::SCHEMA,
                errors,
                String::from_utf8_lossy(bytes)
            );
            Ok(true)
        }
    }
}

static CHECKERS: LazyLock<Vec<(&'static str, Checker)>> = LazyLock::new(|| {
    vec![
        (
            "meta",
            Checker {
                check: check_as::<VisitMeta>,
                schema: validator(VisitMeta::SCHEMA),
            },
        ),
        (
            "end",
            Checker {
                check: check_as::<VisitEnd>,
                schema: validator(VisitEnd::SCHEMA),
            },
        ),
        (
            "result",
            Checker {
                check: check_as::<VisitResult>,
                schema: validator(VisitResult::SCHEMA),
            },
        ),
        (
            "alert",
            Checker {
                check: check_as::<Alert>,
                schema: validator(Alert::SCHEMA),
            },
        ),
        (
            "ack",
            Checker {
                check: check_as::<AlertAck>,
                schema: validator(AlertAck::SCHEMA),
            },
        ),
        (
            "deadletter",
            Checker {
                check: check_as::<DeadLetter>,
                schema: validator(DeadLetter::SCHEMA),
            },
        ),
    ]
});

/// Every message type parses `bytes`; returns the types that accepted it.
fn check_all_messages(bytes: &[u8]) -> Result<Vec<&'static str>, TestCaseError> {
    let mut accepted = Vec::new();
    for (name, c) in CHECKERS.iter() {
        if (c.check)(bytes, &c.schema)? {
            accepted.push(*name);
        }
    }
    Ok(accepted)
}

/// A replacement for a JSON value: wrong types, boundary numbers, hostile
/// strings.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(0)),
        Just(Value::from(-1)),
        Just(Value::from(256)),
        Just(Value::from(65_536)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1e300)),
        Just(Value::from("")),
        Just(Value::from("k1-9f86d081884c7d659a2feaa0c55ad015")),
        Just(Value::from("110101199003077777")),
        Just(Value::from("dev/+/#")),
        Just(Value::from("00000000-0000-0000-0000-000000000000")),
        Just(Value::from("\u{0}\u{1b}[31m")),
        "\\PC{0,40}".prop_map(Value::from),
        Just(Value::from("x".repeat(600))),
        Just(Value::Array(vec![])),
        Just(Value::Object(Default::default())),
        prop::collection::vec("[A-Za-z0-9]{0,4}", 0..40)
            .prop_map(|v| Value::Array(v.into_iter().map(Value::from).collect())),
    ]
}

#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(usize, Value),
    Remove(usize),
    AddKey(usize, String, Value),
    Wrap(usize),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        (any::<usize>(), hostile_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        any::<usize>().prop_map(JsonEdit::Remove),
        (any::<usize>(), "[a-z_]{1,12}", hostile_value())
            .prop_map(|(i, k, v)| JsonEdit::AddKey(i, k, v)),
        any::<usize>().prop_map(JsonEdit::Wrap),
    ]
}

/// Number of nodes of a JSON tree (pre-order).
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `i`-th node of the tree, pre-order, wrapping around.
fn node_mut(v: &mut Value, i: usize) -> &mut Value {
    let mut k = i % count(v);
    descend(v, &mut k)
}

fn descend<'a>(v: &'a mut Value, k: &mut usize) -> &'a mut Value {
    if *k == 0 {
        return v;
    }
    *k -= 1;
    let children: Vec<&'a mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => unreachable!("k is below the subtree's node count"),
    };
    for c in children {
        let n = count(c);
        if *k < n {
            return descend(c, k);
        }
        *k -= n;
    }
    unreachable!("k is below the subtree's node count")
}

fn apply_json(v: &mut Value, e: &JsonEdit) {
    match e {
        JsonEdit::Replace(i, new) => *node_mut(v, *i) = new.clone(),
        JsonEdit::Remove(i) => {
            let node = node_mut(v, *i);
            match node {
                Value::Object(o) if !o.is_empty() => {
                    let k = o.keys().nth(i % o.len()).unwrap().clone();
                    o.remove(&k);
                }
                Value::Array(a) if !a.is_empty() => {
                    a.remove(i % a.len());
                }
                _ => {}
            }
        }
        JsonEdit::AddKey(i, k, new) => {
            if let Value::Object(o) = node_mut(v, *i) {
                o.insert(k.clone(), new.clone());
            }
        }
        JsonEdit::Wrap(i) => {
            let node = node_mut(v, *i);
            *node = Value::Array(vec![node.take()]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunk_decoder_takes_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..700), magic in any::<bool>()) {
        let mut bytes = bytes;
        // Half the inputs open like a chunk, so the decoder gets past the magic.
        if magic && bytes.len() >= 5 {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4] = 1;
        }
        let _ = Chunk::decode(&bytes).map_err(|e| e.to_string());
        check_chunk(&bytes)?;
    }

    #[test]
    fn chunk_decoder_takes_mutated_valid_chunks(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
        fix_crc in any::<bool>(),
    ) {
        let mut bytes = seed.get(&CHUNK_SEEDS).clone();
        for e in &edits {
            apply(&mut bytes, e);
        }
        if fix_crc {
            repair_crc(&mut bytes);
        }
        let _ = Chunk::decode(&bytes).map_err(|e| e.to_string());
        check_chunk(&bytes)?;
    }

    #[test]
    fn json_messages_take_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_all_messages(&bytes)?;
    }

    #[test]
    fn json_messages_take_mutated_valid_messages(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(json_edit(), 1..4),
        byte_edits in prop::collection::vec(edit(), 0..3),
    ) {
        let seed = seed.get(&JSON_SEEDS);
        let mut bytes = match serde_json::from_slice::<Value>(seed) {
            Ok(mut v) => {
                for e in &edits {
                    apply_json(&mut v, e);
                }
                serde_json::to_vec(&v).unwrap()
            }
            Err(_) => seed.clone(),
        };
        for e in &byte_edits {
            apply(&mut bytes, e);
        }
        check_all_messages(&bytes)?;
    }
}

/// The variant name of a chunk error (`TooShort` of `TooShort { .. }`).
fn variant(e: &WireError) -> String {
    format!("{e:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn chunk_corpus_replays_with_its_expected_outcomes() {
    let files = corpus("bin");
    assert!(files.len() >= 20, "the corpus is missing");
    for (name, bytes) in &files {
        let got = Chunk::decode(bytes);
        if name.starts_with("ok-") {
            let chunk = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&chunk.to_bytes(), bytes, "{name}: not canonical");
        } else {
            let expected = name
                .strip_prefix("err-")
                .and_then(|r| r.split(['-', '.']).next())
                .unwrap_or_else(|| panic!("{name}: name is neither ok-* nor err-<Variant>-*"));
            match got {
                Ok(c) => panic!("{name}: accepted {c:?}"),
                Err(e) => assert_eq!(variant(&e), expected, "{name}: {e}"),
            }
        }
    }
}

#[test]
fn json_corpus_replays_with_its_expected_outcomes() {
    let files = corpus("json");
    assert!(files.len() >= 20, "the corpus is missing");
    for (name, bytes) in &files {
        let accepted = check_all_messages(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut parts = name.splitn(3, '-');
        let (outcome, kind) = (parts.next().unwrap(), parts.next().unwrap_or_default());
        match outcome {
            "ok" => assert!(accepted.contains(&kind), "{name}: refused ({accepted:?})"),
            "err" => {
                assert!(
                    CHECKERS.iter().any(|(n, _)| *n == kind),
                    "{name}: unknown type {kind}"
                );
                assert!(!accepted.contains(&kind), "{name}: accepted as {kind}");
            }
            "any" => assert!(accepted.is_empty(), "{name}: accepted as {accepted:?}"),
            _ => panic!("{name}: name is not ok-/err-/any-"),
        }
    }
}
