//! Simulated patients as the clinic knows them, and the pseudonym the
//! device sends instead.
//!
//! A clinic identifies a patient by the 18-character resident identity
//! number (GB 11643-1999: 6-digit area code, birth date, 3-digit sequence
//! whose parity is the sex, ISO 7064 MOD 11-2 check character) and a name.
//! Neither leaves the device: it sends `k<version>-<hex>`, the first 16 bytes
//! of HMAC-SHA256(clinic key, resident id). The simulator writes both to the
//! truth file so tests can prove that neither reaches the archive.

use ecg_wire::{PatientPseudonym, PseudonymKey, PseudonymKeyError};
use rand::Rng;

/// Environment variable read when `--pseudonym-key` is not given.
pub const PSEUDONYM_KEY_ENV: &str = "FIRMWARE_SIM_PSEUDONYM_KEY";

/// The clinic key used when none is configured. Public, like the patients
/// it protects: real clinics are provisioned with their own.
pub const DEMO_CLINIC_KEY: &str = "firmware-sim-demo-clinic-key-NOT-SECRET";

/// Birth dates are counted back from this year, not from the clock, so a
/// seed gives the same patients every time.
const REFERENCE_YEAR: i32 = 2026;

/// County-level area codes (districts of provincial capitals).
const AREA_CODES: [&str; 12] = [
    "110101", "120103", "310104", "320106", "330106", "370102", "410105", "420106", "430102",
    "440106", "510104", "610113",
];

const SURNAMES: [&str; 24] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋",
];

const GIVEN: [&str; 32] = [
    "伟", "芳", "娜", "秀", "英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "兰", "霞", "平", "刚", "桂", "华", "红", "建", "国", "文", "玉", "春", "德",
];

/// A patient as the clinic's own records know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    /// 18-character resident identity number.
    pub local_id: String,
    pub name: String,
}

impl Patient {
    /// A patient of the given sex and age (in years on 1 January of the
    /// reference year), drawn from `rng`.
    pub fn random(rng: &mut impl Rng, male: bool, age_years: u8) -> Patient {
        let area = AREA_CODES[rng.random_range(0..AREA_CODES.len())];
        let year = REFERENCE_YEAR - 1 - i32::from(age_years);
        let month: u32 = rng.random_range(1..=12);
        let day: u32 = rng.random_range(1..=28);
        // Odd sequence numbers are men, even ones women.
        let seq: u32 = rng.random_range(0..500) * 2 + u32::from(male);
        let body = format!("{area}{year:04}{month:02}{day:02}{seq:03}");
        let local_id = format!("{body}{}", check_char(&body));
        let mut name = SURNAMES[rng.random_range(0..SURNAMES.len())].to_owned();
        for _ in 0..rng.random_range(1..=2) {
            name.push_str(GIVEN[rng.random_range(0..GIVEN.len())]);
        }
        Patient { local_id, name }
    }

    /// What the device sends for this patient.
    pub fn pseudonym(&self, clinic_key: &PseudonymKey) -> PatientPseudonym {
        clinic_key.pseudonymise(self.local_id.as_bytes())
    }
}

/// The ISO 7064 MOD 11-2 check character of the first 17 digits.
fn check_char(body: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// The clinic key: `flag`, else [`PSEUDONYM_KEY_ENV`], else
/// [`DEMO_CLINIC_KEY`]; the bool says whether the demo key was taken.
pub fn clinic_key(
    flag: Option<&str>,
    version: u16,
) -> Result<(PseudonymKey, bool), PseudonymKeyError> {
    let env = std::env::var(PSEUDONYM_KEY_ENV).ok();
    match flag.map(str::to_owned).or(env) {
        Some(secret) => Ok((PseudonymKey::new(version, secret.as_bytes())?, false)),
        None => Ok((
            PseudonymKey::new(version, DEMO_CLINIC_KEY.as_bytes())?,
            true,
        )),
    }
}

/// The key of [`DEMO_CLINIC_KEY`], version 1.
pub fn demo_clinic_key() -> PseudonymKey {
    PseudonymKey::new(1, DEMO_CLINIC_KEY.as_bytes()).expect("the demo key is long enough")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn check_character_matches_the_standard_example() {
        // The worked example of GB 11643-1999.
        assert_eq!(check_char("11010519491231002"), 'X');
        assert_eq!(check_char("44052419800101001"), '3');
    }

    #[test]
    fn patients_are_deterministic_well_formed_and_sexed() {
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for i in 0..200u8 {
            let male = i % 2 == 0;
            let p = Patient::random(&mut a, male, 20 + i % 70);
            assert_eq!(p, Patient::random(&mut b, male, 20 + i % 70));
            assert_eq!(p.local_id.len(), 18, "{}", p.local_id);
            assert_eq!(
                p.local_id[17..].chars().next(),
                Some(check_char(&p.local_id[..17]))
            );
            let seq: u32 = p.local_id[14..17].parse().unwrap();
            assert_eq!(seq % 2 == 1, male);
            let year: i32 = p.local_id[6..10].parse().unwrap();
            assert_eq!(year, REFERENCE_YEAR - 1 - i32::from(20 + i % 70));
            assert!((2..=3).contains(&p.name.chars().count()), "{}", p.name);
        }
    }

    #[test]
    fn pseudonym_is_the_keyed_hmac_of_the_local_id() {
        let key = demo_clinic_key();
        let p = Patient {
            local_id: "11010519491231002X".into(),
            name: "王伟".into(),
        };
        let pseudo = p.pseudonym(&key);
        assert_eq!(pseudo, key.pseudonymise(b"11010519491231002X"));
        assert!(!pseudo.as_str().contains("11010519491231002X"));
        let other = PseudonymKey::new(1, b"another-clinic-key").unwrap();
        assert_ne!(pseudo, p.pseudonym(&other));
    }
}
