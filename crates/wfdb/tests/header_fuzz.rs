//! Fuzzing of the WFDB header parser with a large case count: arbitrary
//! bytes (as the reader sees them, decoded lossily), and mutated real and
//! crafted headers from `fuzz-corpus/` (byte edits, token replacements with
//! boundary and hostile tokens, line deletions and duplications). Every
//! input gives a header or a typed error with a line number inside the
//! text, never a panic. The corpus is also replayed: `ok-*.hea` parse,
//! `err-*.hea` are refused. Case counts: `ECG_FUZZ_CASES` (default 30 000).

use std::path::PathBuf;
use std::sync::LazyLock;

use ecg_wfdb::Header;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("ECG_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000)
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fuzz-corpus/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hea"))
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

static SEEDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    corpus()
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect()
});

/// Parses; an error must point at a line of the text (1 for empty text).
fn check(text: &str) -> Result<(), TestCaseError> {
    match Header::parse(text) {
        Ok(h) => {
            let _ = (h.sex(), h.age_years(), h.lead_names(), h.n_signals());
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            prop_assert!(
                (1..=lines).contains(&e.line),
                "error line {} outside 1..={}: {}",
                e.line,
                lines,
                e
            );
            let _ = e.to_string();
        }
    }
    Ok(())
}

fn hostile_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967295".to_owned()),
        Just("4294967296".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("1e309".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("-0.0".to_owned()),
        Just("212x0".to_owned()),
        Just("16x4294967295".to_owned()),
        Just("16:99999999999".to_owned()),
        Just("16+18446744073709551615".to_owned()),
        Just("200(".to_owned()),
        Just("200()/".to_owned()),
        Just("(((".to_owned()),
        Just("/".to_owned()),
        Just("r/0".to_owned()),
        Just("r/4294967296".to_owned()),
        Just("360/".to_owned()),
        Just("360/0(".to_owned()),
        Just("#".to_owned()),
        Just("\u{0}".to_owned()),
        Just("é✓王".to_owned()),
        "[0-9]{1,25}",
        "-?[0-9]{0,4}\\.?[0-9]{0,4}",
        "[0-9]{1,4}x[0-9]{1,12}(:[0-9]{1,12})?(\\+[0-9]{1,22})?",
        "[0-9.]{1,6}\\([-0-9]{0,12}\\)?(/[a-zA-Z]{0,3})?",
        "\\PC{0,8}",
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    ReplaceToken(usize, String),
    InsertToken(usize, String),
    DeleteLine(usize),
    DuplicateLine(usize),
    Byte(usize, u8),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), hostile_token()).prop_map(|(i, t)| Edit::ReplaceToken(i, t)),
        2 => (any::<usize>(), hostile_token()).prop_map(|(i, t)| Edit::InsertToken(i, t)),
        1 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut lines: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect();
    let n_tokens: usize = lines.iter().map(Vec::len).sum();
    let locate = |i: usize, lines: &Vec<Vec<String>>| -> Option<(usize, usize)> {
        if n_tokens == 0 {
            return None;
        }
        let mut k = i % n_tokens;
        for (li, l) in lines.iter().enumerate() {
            if k < l.len() {
                return Some((li, k));
            }
            k -= l.len();
        }
        None
    };
    match e {
        Edit::ReplaceToken(i, t) => {
            if let Some((l, k)) = locate(*i, &lines) {
                lines[l][k] = t.clone();
            }
        }
        Edit::InsertToken(i, t) => {
            if let Some((l, k)) = locate(*i, &lines) {
                lines[l].insert(k, t.clone());
            }
        }
        Edit::DeleteLine(i) if !lines.is_empty() => {
            let n = lines.len();
            lines.remove(i % n);
        }
        Edit::DuplicateLine(i) if !lines.is_empty() => {
            let n = lines.len();
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::Byte(i, b) => {
            let mut bytes = text.as_bytes().to_vec();
            if !bytes.is_empty() {
                let n = bytes.len();
                bytes[i % n] = *b;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::Truncate(i) => {
            let mut cut = i % (text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return text[..cut].to_owned();
        }
        _ => {}
    }
    lines
        .into_iter()
        .map(|l| l.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn header_parser_takes_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn header_parser_takes_mutated_headers(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut text = seed.get(&SEEDS).clone();
        for e in &edits {
            text = apply(&text, e);
        }
        check(&text)?;
    }
}

#[test]
fn header_corpus_replays_with_its_expected_outcomes() {
    let files = corpus();
    assert!(files.len() >= 20, "the corpus is missing");
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        let got = Header::parse(&text);
        if name.starts_with("ok-") {
            let h = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let _ = (h.sex(), h.age_years(), h.lead_names());
        } else {
            assert!(name.starts_with("err-"), "{name}: neither ok- nor err-");
            let e = match got {
                Ok(h) => panic!("{name}: accepted {h:?}"),
                Err(e) => e,
            };
            assert!(
                (1..=text.lines().count().max(1)).contains(&e.line),
                "{name}: {e}"
            );
        }
    }
}
