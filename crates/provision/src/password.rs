//! Random passwords drawn from the operating system's CSPRNG.
//!
//! The alphabet is ASCII letters and digits only: passwords end up in CSV
//! files, in `mqtt://user:pass@host` URLs and in Mosquitto's `user:pass`
//! lines, where `,` `:` `@` `/` and `%` would each need escaping.

/// 62 symbols: log2(62) ≈ 5.95 bits per character.
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Below 16 characters (about 95 bits) a leaked hash becomes worth
/// brute-forcing offline.
pub const MIN_PASSWORD_LEN: usize = 16;

/// Mosquitto's password file lines are read into a fixed buffer; stay well
/// inside it.
pub const MAX_PASSWORD_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password length {0} is outside {MIN_PASSWORD_LEN}..={MAX_PASSWORD_LEN}")]
    Length(usize),
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
}

/// A password of `len` characters, uniform over [`ALPHABET`].
pub fn generate_password(len: usize) -> Result<String, PasswordError> {
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(PasswordError::Length(len));
    }
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(PasswordError::Random)?;
        for &b in &buf {
            // Rejection sampling: 256 is not a multiple of 62, and taking
            // `b % 62` for every byte would favour the first 8 symbols.
            if usize::from(b) < 4 * ALPHABET.len() && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_the_length_and_alphabet_asked_for() {
        for len in [MIN_PASSWORD_LEN, 24, MAX_PASSWORD_LEN] {
            let p = generate_password(len).unwrap();
            assert_eq!(p.len(), len);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()), "{p}");
        }
    }

    #[test]
    fn short_or_huge_lengths_are_refused() {
        assert!(matches!(
            generate_password(8),
            Err(PasswordError::Length(8))
        ));
        assert!(generate_password(MAX_PASSWORD_LEN + 1).is_err());
    }

    #[test]
    fn passwords_differ_and_use_the_whole_alphabet() {
        let a = generate_password(64).unwrap();
        let b = generate_password(64).unwrap();
        assert_ne!(a, b);
        // 200 draws of 62 symbols: a biased or truncated alphabet would
        // leave symbols out; a uniform one misses any given symbol with
        // probability (61/62)^12800, effectively zero.
        let mut seen = [false; 128];
        for _ in 0..100 {
            for c in generate_password(128).unwrap().bytes() {
                seen[usize::from(c)] = true;
            }
        }
        assert!(ALPHABET.iter().all(|&c| seen[usize::from(c)]));
    }
}
