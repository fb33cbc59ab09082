//! Arbitrary bytes must produce a value or an error, never a panic.

use ecg_wfdb::{decode_annotations, Header};
use proptest::prelude::*;

/// Header-like text built from WFDB tokens, so that the parser goes past the
/// first field far more often than with uniformly random strings.
fn header_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[0-9]{1,6}",
        "-?[0-9]{1,4}(\\.[0-9])?",
        "[0-9]{1,4}\\([-0-9x]{0,4}\\)?(/[a-zA-Z]{0,3})?",
        "(8|16|61|80|160|212|24|32|0|999)(x[0-9]{1,2})?(:[0-9])?(\\+[0-9]{1,3})?",
        "[a-z]{1,4}\\.(dat|mat)",
        "#[<>a-zA-Z]{0,6}: ?[A-Za-z0-9?]{0,5}",
        "[ \t/()+:#]",
    ];
    prop::collection::vec(prop::collection::vec(token, 0..10), 0..8).prop_map(|lines| {
        lines
            .into_iter()
            .map(|l| l.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn header_parse_never_panics(text in "\\PC{0,300}") {
        if let Ok(h) = Header::parse(&text) {
            let _ = (h.sex(), h.age_years(), h.lead_names());
        }
    }

    #[test]
    fn header_like_text_never_panics(text in header_like()) {
        if let Ok(h) = Header::parse(&text) {
            let _ = (h.sex(), h.age_years(), h.lead_names());
        }
    }

    #[test]
    fn annotation_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(anns) = decode_annotations(&bytes) {
            for a in &anns {
                let _ = (a.symbol(), a.is_beat());
            }
        }
    }
}
