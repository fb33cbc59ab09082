//! Reads real PhysioNet records from the shared data folder. Expected values
//! were derived independently by unpacking the raw bytes with Python's
//! `struct` module (not with this crate), and MIT-BIH 101's beat count is
//! the published database figure (1865).

use std::path::PathBuf;

use ecg_wfdb::{read_annotations, Record, Sex, SignalFormat};

/// The shared data folder: `ECG_DATA_DIR` if set, else `<repo>/../shared/data`.
/// Missing data fails the test loudly rather than skipping it.
fn data_dir() -> PathBuf {
    let dir = std::env::var_os("ECG_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        });
    assert!(
        dir.join("mitdb").is_dir(),
        "ECG data folder not found at {} (set ECG_DATA_DIR to the folder holding mitdb/, ludb/, ptb/, cinc/)",
        dir.display()
    );
    dir
}

#[test]
fn mitdb_101_format_212() {
    let rec = Record::read(data_dir().join("mitdb/101")).unwrap();
    assert_eq!(rec.n_signals(), 2);
    assert_eq!(rec.fs_hz(), 360.0);
    assert_eq!(rec.n_samples(), 650_000);
    assert_eq!(rec.lead_names(), vec!["MLII", "V1"]);
    assert_eq!(rec.header().signals[0].format, SignalFormat::F212);
    assert_eq!(&rec.digital(0).unwrap()[..5], &[955; 5]);
    assert_eq!(&rec.digital(1).unwrap()[..5], &[992; 5]);
    assert_eq!(rec.digital(0).unwrap()[649_999], 1024);
    rec.verify_checksums().unwrap();
    // (955 - 1024) / 200 mV
    assert!((rec.millivolts(0).unwrap()[0] - (-0.345)).abs() < 1e-6);
    assert_eq!(rec.header().sex(), Some(Sex::Female));
    assert_eq!(rec.header().age_years(), Some(75.0));
}

#[test]
fn mitdb_101_annotations() {
    let anns = read_annotations(data_dir().join("mitdb/101"), "atr").unwrap();
    assert_eq!(anns.len(), 1874);
    assert_eq!((anns[0].sample, anns[0].symbol()), (7, "+"));
    assert_eq!(anns[0].aux.as_deref(), Some("(N"));
    assert_eq!((anns[1].sample, anns[1].symbol()), (83, "N"));
    assert_eq!(anns[3].sample, 711);
    assert_eq!(anns.last().unwrap().sample, 649_751);
    assert_eq!(anns.iter().filter(|a| a.is_beat()).count(), 1865);
    assert!(anns.windows(2).all(|w| w[0].sample <= w[1].sample));
}

#[test]
fn every_mitdb_record_reads_with_valid_checksums_and_annotations() {
    let dir = data_dir().join("mitdb");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hea") {
            let base = path.with_extension("");
            let rec = Record::read(&base).unwrap();
            rec.verify_checksums().unwrap();
            let anns = read_annotations(&base, "atr").unwrap();
            let last = anns.last().unwrap().sample;
            assert!(last < rec.n_samples() as u64, "{}", base.display());
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} mitdb records found");
}

#[test]
fn ludb_record_and_lead_annotations() {
    let base = data_dir().join("ludb/2");
    let rec = Record::read(&base).unwrap();
    assert_eq!(rec.n_signals(), 12);
    assert_eq!(rec.fs_hz(), 500.0);
    assert_eq!(rec.n_samples(), 5000);
    assert_eq!(rec.lead_names()[6], "v1");
    assert_eq!(&rec.digital(0).unwrap()[..4], &[-162, -140, -192, -175]);
    assert_eq!(&rec.digital(11).unwrap()[..4], &[-2, 7, 5, 12]);
    rec.verify_checksums().unwrap();
    // Lead I: gain 756 adu/mV, baseline -3.
    let mv = rec.millivolts(0).unwrap();
    assert!((mv[0] - (-159.0 / 756.0)).abs() < 1e-6);
    assert_eq!(rec.header().sex(), Some(Sex::Male));
    assert_eq!(rec.header().age_years(), Some(64.0));

    let anns = read_annotations(&base, "i").unwrap();
    assert_eq!(anns.len(), 75);
    let first: Vec<(u64, &str)> = anns[..6].iter().map(|a| (a.sample, a.symbol())).collect();
    assert_eq!(
        first,
        vec![
            (550, "("),
            (569, "N"),
            (586, ")"),
            (666, "("),
            (708, "t"),
            (749, ")")
        ]
    );
    assert_eq!((anns[74].sample, anns[74].symbol()), (4236, ")"));
    for lead in [
        "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6",
    ] {
        assert!(!read_annotations(&base, lead).unwrap().is_empty(), "{lead}");
    }
}

#[test]
fn ptb_records_format_16_with_two_signal_files() {
    let rec = Record::read(data_dir().join("ptb/patient200_s0405_re")).unwrap();
    assert_eq!(
        (rec.n_signals(), rec.fs_hz(), rec.n_samples()),
        (12, 1000.0, 10_000)
    );
    assert_eq!(
        &rec.digital(10).unwrap()[..4],
        &[-1659, -1661, -1659, -1661]
    );
    assert_eq!(rec.digital(11).unwrap()[9999], -86);
    rec.verify_checksums().unwrap();
    assert_eq!(rec.header().sex(), Some(Sex::Male));
    assert_eq!(rec.header().age_years(), None, "age: n/a");

    let rec = Record::read(data_dir().join("ptb/s0010_re")).unwrap();
    assert_eq!((rec.n_signals(), rec.n_samples()), (15, 38_400));
    assert_eq!(&rec.digital(0).unwrap()[..4], &[-489, -485, -483, -482]);
    assert_eq!(&rec.digital(13).unwrap()[..4], &[120, 122, 111, 107]);
    assert_eq!(rec.signal_index("VZ"), Some(14));
    rec.verify_checksums().unwrap();
    // Gain 2000 adu/mV.
    assert_eq!(rec.millivolts(0).unwrap()[0], -489.0 / 2000.0);
    assert_eq!(rec.header().sex(), Some(Sex::Female));
    assert_eq!(rec.header().age_years(), Some(81.0));
}

#[test]
fn cinc_mat_record_with_byte_offset() {
    let rec = Record::read(data_dir().join("cinc/A0001")).unwrap();
    assert_eq!(
        (rec.n_signals(), rec.fs_hz(), rec.n_samples()),
        (12, 500.0, 7500)
    );
    let spec = &rec.header().signals[0];
    assert_eq!((spec.format, spec.byte_offset), (SignalFormat::F16, 24));
    assert_eq!(&rec.digital(0).unwrap()[..4], &[28, 39, 45, 49]);
    assert_eq!(&rec.digital(11).unwrap()[..4], &[-16, -7, 2, 13]);
    assert_eq!(rec.digital(6).unwrap()[7499], -614);
    rec.verify_checksums().unwrap();
    assert_eq!(rec.lead_names()[3], "aVR");
    assert_eq!(rec.header().sex(), Some(Sex::Male));
    assert_eq!(rec.header().age_years(), Some(74.0));
}

#[test]
fn every_shared_record_reads() {
    let root = data_dir();
    let mut n = 0;
    for db in ["ludb", "ptb", "cinc", "chapman"] {
        for entry in std::fs::read_dir(root.join(db)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "hea") {
                let rec = Record::read(&path).unwrap_or_else(|e| panic!("{e}"));
                rec.verify_checksums().unwrap_or_else(|e| panic!("{e}"));
                assert!(rec.n_samples() > 0);
                for s in 0..rec.n_signals() {
                    assert!(rec.millivolts(s).is_ok(), "{} signal {s}", path.display());
                }
                n += 1;
            }
        }
    }
    assert!(n >= 150, "only {n} records found");
}
