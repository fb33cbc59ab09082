//! Random signal files under random (valid) headers: reading returns either
//! an error or exactly the declared number of samples, never a panic.

use ecg_wfdb::{Error, Header, Record};
use proptest::prelude::*;

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ecg-wfdb-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn reading_random_signal_files_never_panics(
        format in prop::sample::select(vec![8u16, 16, 24, 32, 61, 80, 160, 212]),
        spfs in prop::collection::vec(1u32..4, 1..4),
        offset in 0u64..8,
        n_samples in prop::option::of(0u64..40),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let dir = scratch_dir();
        std::fs::write(dir.join("f.dat"), &bytes).unwrap();
        let mut text = format!("f {} 360", spfs.len());
        if let Some(n) = n_samples {
            text += &format!(" {n}");
        }
        text += "\n";
        for (i, spf) in spfs.iter().enumerate() {
            text += &format!("f.dat {format}x{spf}+{offset} 200 12 0 0 0 0 lead{i}\n");
        }
        let header = Header::parse(&text).unwrap();
        let result = Record::from_header(header, &dir.join("f"));
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(rec) => {
                if let Some(n) = n_samples {
                    prop_assert_eq!(rec.n_samples() as u64, n);
                }
                for (i, spf) in spfs.iter().enumerate() {
                    prop_assert_eq!(rec.digital(i).unwrap().len(), rec.n_samples() * *spf as usize);
                    prop_assert_eq!(rec.millivolts(i).unwrap().len(), rec.digital(i).unwrap().len());
                }
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::Signal { .. }), "{}", e);
                prop_assert!(e.to_string().contains("f.dat"));
            }
        }
    }
}
