//! MIT-format annotation files (`.atr`, LUDB's per-lead `.i` ... `.v6`, any
//! annotator name).
//!
//! The file is a sequence of little-endian 16-bit words: the top 6 bits are
//! a code, the low 10 bits data. Codes 1..=49 start an annotation `data`
//! samples after the previous one; pseudo-codes modify it: SKIP (59) adds a
//! 32-bit interval to the next annotation's time, NUM/SUB/CHN (60/61/62) set
//! fields of the annotation just read, AUX (63) attaches `data` bytes of
//! text. A zero word ends the file. As in the WFDB library, `chan` and `num`
//! carry over from one annotation to the next; `subtype` and `aux` do not.

use std::path::Path;

use crate::error::{AnnotationDecodeError, Error};
use crate::record::with_extension_appended;

const SKIP: u8 = 59;
const NUM: u8 = 60;
const SUB: u8 = 61;
const CHN: u8 = 62;
const AUX: u8 = 63;

/// Mnemonics of annotation codes 0..=49, as printed by WFDB's `rdann`
/// (unassigned codes print as `[n]`).
const SYMBOLS: [&str; 50] = [
    " ", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "[15]", "|", "[17]",
    "s", "T", "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]", "e", "n", "@",
    "x", "f", "(", ")", "r", "[42]", "[43]", "[44]", "[45]", "[46]", "[47]", "[48]", "[49]",
];

/// Codes that EC57 and WFDB's `isqrs` count as beats:
/// N L R B A a J S V r F e j n E / f Q ?.
const BEAT_CODES: [u8; 19] = [
    1, 2, 3, 25, 8, 4, 7, 9, 5, 41, 6, 34, 11, 35, 10, 12, 38, 13, 30,
];

/// One annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index (frame number at the record's `fs_hz`).
    pub sample: u64,
    /// MIT annotation code (1 = N, 5 = V, 24 = p, ...).
    pub code: u8,
    pub subtype: i8,
    pub chan: u8,
    pub num: i8,
    /// Auxiliary text, e.g. rhythm labels such as `(AFIB`.
    pub aux: Option<String>,
}

impl Annotation {
    /// Standard WFDB mnemonic (`N`, `V`, `(`, `p`, ...).
    pub fn symbol(&self) -> &'static str {
        SYMBOLS
            .get(usize::from(self.code))
            .copied()
            .unwrap_or("[?]")
    }

    /// Whether the annotation marks a QRS complex (EC57 beat label).
    pub fn is_beat(&self) -> bool {
        BEAT_CODES.contains(&self.code)
    }
}

/// Reads the annotation file `<record_path>.<annotator>`, e.g.
/// `read_annotations("mitdb/100", "atr")` or `read_annotations("ludb/2", "ii")`.
pub fn read_annotations(
    record_path: impl AsRef<Path>,
    annotator: &str,
) -> Result<Vec<Annotation>, Error> {
    let path = with_extension_appended(record_path.as_ref(), annotator);
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    decode_annotations(&bytes).map_err(|source| Error::Annotation { path, source })
}

/// Decodes the bytes of an MIT-format annotation file.
///
/// A file that ends without the terminating zero word is accepted (the
/// annotations read so far are complete); a file cut inside a SKIP interval
/// or AUX text is an error.
pub fn decode_annotations(bytes: &[u8]) -> Result<Vec<Annotation>, AnnotationDecodeError> {
    let mut out: Vec<Annotation> = Vec::new();
    let mut time: i64 = 0;
    let mut chan: u8 = 0;
    let mut num: i8 = 0;
    let mut pos = 0usize;
    let err = |offset: usize, message: String| AnnotationDecodeError { offset, message };
    while pos + 2 <= bytes.len() {
        let word_at = pos;
        let word = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
        pos += 2;
        let code = (word >> 10) as u8;
        let data = word & 0x3ff;
        match code {
            0 if data == 0 => return Ok(out),
            SKIP => {
                let Some(b) = bytes.get(pos..pos + 4) else {
                    return Err(err(word_at, "file ends inside a SKIP interval".into()));
                };
                // PDP-11 long: high 16-bit word first, each word little-endian.
                let high = u16::from_le_bytes([b[0], b[1]]);
                let low = u16::from_le_bytes([b[2], b[3]]);
                let interval = ((u32::from(high) << 16) | u32::from(low)) as i32;
                time += i64::from(interval);
                pos += 4;
            }
            NUM => {
                let last = out
                    .last_mut()
                    .ok_or_else(|| err(word_at, "NUM before any annotation".into()))?;
                num = sign_extend_10(data) as i8;
                last.num = num;
            }
            SUB => {
                let last = out
                    .last_mut()
                    .ok_or_else(|| err(word_at, "SUB before any annotation".into()))?;
                last.subtype = sign_extend_10(data) as i8;
            }
            CHN => {
                let last = out
                    .last_mut()
                    .ok_or_else(|| err(word_at, "CHN before any annotation".into()))?;
                chan = data as u8;
                last.chan = chan;
            }
            AUX => {
                let len = usize::from(data);
                let Some(text) = bytes.get(pos..pos + len) else {
                    return Err(err(
                        word_at,
                        format!("file ends inside {len} bytes of AUX text"),
                    ));
                };
                let last = out
                    .last_mut()
                    .ok_or_else(|| err(word_at, "AUX before any annotation".into()))?;
                // Writers NUL-terminate the text inside the counted length.
                let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
                last.aux = Some(String::from_utf8_lossy(text).into_owned());
                pos += len + (len % 2);
            }
            _ => {
                time += i64::from(data);
                let sample = u64::try_from(time)
                    .map_err(|_| err(word_at, format!("annotation time {time} is negative")))?;
                out.push(Annotation {
                    sample,
                    code,
                    subtype: 0,
                    chan,
                    num,
                    aux: None,
                });
            }
        }
    }
    if pos < bytes.len() {
        return Err(err(pos, "odd trailing byte".into()));
    }
    Ok(out)
}

fn sign_extend_10(data: u16) -> i16 {
    ((data << 6) as i16) >> 6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(code: u8, data: u16) -> [u8; 2] {
        ((u16::from(code) << 10) | (data & 0x3ff)).to_le_bytes()
    }

    fn file(words: &[&[u8]]) -> Vec<u8> {
        words.concat()
    }

    #[test]
    fn decodes_codes_times_and_modifiers() {
        let bytes = file(&[
            &word(28, 7),
            &word(AUX, 3),
            b"(N\0\0",
            &word(1, 70),
            &word(5, 300),
            &word(SUB, 0x3ff), // -1
            &word(CHN, 1),
            &word(NUM, 2),
            &word(1, 300),
            &word(0, 0),
            &word(1, 5), // after the end marker: ignored
        ]);
        let anns = decode_annotations(&bytes).unwrap();
        assert_eq!(anns.len(), 4);
        assert_eq!(anns[0].sample, 7);
        assert_eq!(anns[0].symbol(), "+");
        assert_eq!(anns[0].aux.as_deref(), Some("(N"));
        assert!(!anns[0].is_beat());
        assert_eq!((anns[1].sample, anns[1].symbol()), (77, "N"));
        assert_eq!(anns[2].symbol(), "V");
        assert_eq!((anns[2].subtype, anns[2].chan, anns[2].num), (-1, 1, 2));
        // chan and num persist, subtype and aux do not.
        assert_eq!((anns[3].subtype, anns[3].chan, anns[3].num), (0, 1, 2));
        assert_eq!(anns[3].aux, None);
        assert_eq!(anns[3].sample, 677);
        assert!(anns[3].is_beat());
    }

    #[test]
    fn skip_adds_a_pdp11_long_interval() {
        // 100000 = 0x0001_86A0: high word 0x0001 then low word 0x86A0.
        let bytes = file(&[
            &word(1, 10),
            &word(SKIP, 0),
            &[0x01, 0x00, 0xA0, 0x86],
            &word(24, 5),
            &word(AUX, 4),
            b"abcd",
            &word(27, 1),
        ]);
        let anns = decode_annotations(&bytes).unwrap();
        assert_eq!(anns[1].sample, 10 + 100_000 + 5);
        assert_eq!(anns[1].symbol(), "p");
        assert_eq!(anns[1].aux.as_deref(), Some("abcd"));
        assert_eq!((anns[2].sample, anns[2].symbol()), (10 + 100_000 + 6, "t"));
    }

    #[test]
    fn odd_length_aux_is_padded() {
        let bytes = file(&[&word(1, 1), &word(AUX, 1), b"x\0", &word(39, 2)]);
        let anns = decode_annotations(&bytes).unwrap();
        assert_eq!(anns[0].aux.as_deref(), Some("x"));
        assert_eq!((anns[1].sample, anns[1].symbol()), (3, "("));
    }

    #[test]
    fn truncation_and_misplaced_modifiers_are_errors() {
        let e = decode_annotations(&file(&[&word(1, 1), &word(SKIP, 0), &[1, 0]])).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("SKIP"));
        let e = decode_annotations(&file(&[&word(1, 1), &word(AUX, 9), b"ab"])).unwrap_err();
        assert!(e.message.contains("AUX"));
        assert!(decode_annotations(&word(NUM, 1)).is_err());
        assert!(decode_annotations(&[1, 4, 0]).is_err());
        // A negative SKIP taking time below zero.
        let neg = file(&[&word(SKIP, 0), &[0xff, 0xff, 0xf0, 0xff], &word(1, 0)]);
        assert!(decode_annotations(&neg)
            .unwrap_err()
            .message
            .contains("negative"));
        assert_eq!(decode_annotations(&[]).unwrap(), vec![]);
    }

    #[test]
    fn symbols_and_beat_set() {
        let a = |code| Annotation {
            sample: 0,
            code,
            subtype: 0,
            chan: 0,
            num: 0,
            aux: None,
        };
        let beats: String = (0..=49u8)
            .filter(|&c| a(c).is_beat())
            .map(|c| a(c).symbol())
            .collect();
        assert_eq!(beats, "NLRaVFJASEj/QB?enfr");
        assert_eq!(a(14).symbol(), "~");
        assert_eq!(a(16).symbol(), "|");
        assert_eq!(a(22).symbol(), "\"");
        assert_eq!(a(31).symbol(), "!");
        assert_eq!(a(40).symbol(), ")");
        assert_eq!(a(55).symbol(), "[?]");
    }
}
