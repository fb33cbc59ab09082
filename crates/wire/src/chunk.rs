//! The binary sample chunk: the one message that carries samples.
//!
//! Layout (v1), all integers little-endian; schemas/README.md has the
//! normative byte table.
//!
//! ```text
//! off len field
//!   0   4 magic "ECGC"
//!   4   1 version (1)
//!   5   1 flags: bit0 last, bit1 clipped, bit2 lead-off mask present
//!   6   2 samples per lead (u16)
//!   8  16 visit id (UUID bytes)
//!  24   4 sequence number (u32, 0-based, +1 per chunk)
//!  28   4 index of the first sample, per lead, since visit start (u32)
//!  32   4 lead mask (u32, bit = Lead::index())
//!  36   4 CRC-32 (IEEE) of every other byte of the message
//!  40  (4 lead-off mask, only when flag bit2 is set)
//!  40/44   samples: int16, lead-major (all of lead 0, then lead 1, ...)
//! ```
//!
//! The 40-byte header is 1.0 % of a 1 s chunk at 250 Hz x 8 leads. Samples
//! are lead-major because each lead is a smooth signal: contiguous blocks of
//! one lead compress far better than interleaved leads if a transport or the
//! spool ever compresses.

use crate::ids::VisitId;
use crate::lead::{LeadError, LeadSet};

/// The four magic bytes that open every chunk.
pub const MAGIC: [u8; 4] = *b"ECGC";
/// The chunk layout version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the samples when no lead-off mask is present.
pub const HEADER_LEN: usize = 40;
/// Extra header bytes when the lead-off mask is present.
pub const LEAD_OFF_LEN: usize = 4;
/// Upper bound on samples in one chunk (all leads together): 128 KiB of
/// payload, i.e. more than 5 s of 12 leads at 1 kHz. Bounds the memory an
/// untrusted message can make the pipeline allocate.
pub const MAX_SAMPLES_PER_CHUNK: usize = 65_536;

const FLAG_LAST: u8 = 1 << 0;
const FLAG_CLIPPED: u8 = 1 << 1;
const FLAG_LEAD_OFF: u8 = 1 << 2;
const KNOWN_FLAGS: u8 = FLAG_LAST | FLAG_CLIPPED | FLAG_LEAD_OFF;

const CRC_OFFSET: usize = 36;

/// Every way a chunk can be wrong, when building one or decoding bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("chunk is {len} bytes, shorter than the {needed}-byte header")]
    TooShort { len: usize, needed: usize },
    #[error("bad magic {found:02x?}, expected \"ECGC\"")]
    BadMagic { found: [u8; 4] },
    #[error("chunk layout version {found} is not supported (this reader knows {VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("flag bits {bits:#04x} are not defined in v1")]
    UnknownFlags { bits: u8 },
    #[error("lead mask {mask:#010x}: {source}")]
    UnknownLead {
        mask: u32,
        #[source]
        source: LeadError,
    },
    #[error("chunk has no leads")]
    NoLeads,
    #[error("chunk has no samples")]
    NoSamples,
    #[error("{samples_per_lead} samples x {n_leads} leads exceeds the {max}-sample bound")]
    TooManySamples {
        samples_per_lead: usize,
        n_leads: usize,
        max: usize,
    },
    #[error("{samples} samples do not divide evenly over {n_leads} leads")]
    RaggedSamples { samples: usize, n_leads: usize },
    #[error(
        "first sample {first_sample} + {samples_per_lead} samples overflows the u32 sample index"
    )]
    SampleIndexOverflow {
        first_sample: u32,
        samples_per_lead: u16,
    },
    #[error("lead-off flag set but the lead-off mask is empty")]
    EmptyLeadOffMask,
    #[error(
        "lead-off mask {lead_off:#010x} names leads outside the chunk's lead mask {leads:#010x}"
    )]
    LeadOffOutsideLeadSet { lead_off: u32, leads: u32 },
    #[error("chunk is {actual} bytes but its header describes {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("CRC mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("visit id is the nil UUID")]
    NilVisitId,
}

/// One chunk of a visit's samples: `samples_per_lead` consecutive samples of
/// every lead in `leads`, starting at sample `first_sample` of the visit.
///
/// Fields are private so that every `Chunk` in existence satisfies the
/// layout's invariants and [`Chunk::to_bytes`] cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    visit_id: VisitId,
    seq: u32,
    first_sample: u32,
    leads: LeadSet,
    samples_per_lead: u16,
    last: bool,
    clipped: bool,
    lead_off: LeadSet,
    samples: Vec<i16>,
}

impl Chunk {
    /// A chunk of `samples` laid out lead-major in the canonical order of
    /// `leads` (all of the first lead, then all of the next, ...).
    pub fn new(
        visit_id: VisitId,
        seq: u32,
        first_sample: u32,
        leads: LeadSet,
        samples: Vec<i16>,
    ) -> Result<Chunk, WireError> {
        let n_leads = leads.len();
        if n_leads == 0 {
            return Err(WireError::NoLeads);
        }
        if samples.is_empty() {
            return Err(WireError::NoSamples);
        }
        if !samples.len().is_multiple_of(n_leads) {
            return Err(WireError::RaggedSamples {
                samples: samples.len(),
                n_leads,
            });
        }
        let per_lead = samples.len() / n_leads;
        let samples_per_lead = check_sample_bounds(per_lead, n_leads)?;
        check_index_overflow(first_sample, samples_per_lead)?;
        Ok(Chunk {
            visit_id,
            seq,
            first_sample,
            leads,
            samples_per_lead,
            last: false,
            clipped: false,
            lead_off: LeadSet::EMPTY,
            samples,
        })
    }

    /// Marks this chunk as the visit's last one.
    pub fn with_last(mut self, last: bool) -> Chunk {
        self.last = last;
        self
    }

    /// Marks that at least one sample sat on an ADC rail.
    pub fn with_clipped(mut self, clipped: bool) -> Chunk {
        self.clipped = clipped;
        self
    }

    /// Leads whose electrode was off during (part of) this chunk; must be a
    /// subset of the chunk's leads. An empty set means none.
    pub fn with_lead_off(mut self, lead_off: LeadSet) -> Result<Chunk, WireError> {
        if !lead_off.is_subset_of(self.leads) {
            return Err(WireError::LeadOffOutsideLeadSet {
                lead_off: lead_off.mask(),
                leads: self.leads.mask(),
            });
        }
        self.lead_off = lead_off;
        Ok(self)
    }

    pub fn visit_id(&self) -> VisitId {
        self.visit_id
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Index (per lead, from visit start) of this chunk's first sample.
    pub fn first_sample(&self) -> u32 {
        self.first_sample
    }

    pub fn leads(&self) -> LeadSet {
        self.leads
    }

    pub fn samples_per_lead(&self) -> usize {
        usize::from(self.samples_per_lead)
    }

    pub fn is_last(&self) -> bool {
        self.last
    }

    pub fn is_clipped(&self) -> bool {
        self.clipped
    }

    pub fn lead_off(&self) -> LeadSet {
        self.lead_off
    }

    /// All samples, lead-major in canonical lead order.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// The samples of the `position`-th lead of [`Chunk::leads`]
    /// (see [`LeadSet::position`]), or `None` past the last lead.
    pub fn lead_samples(&self, position: usize) -> Option<&[i16]> {
        let n = self.samples_per_lead();
        self.samples.get(position * n..(position + 1) * n)
    }

    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }

    /// Size of this chunk on the wire, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.header_len() + 2 * self.samples.len()
    }

    fn header_len(&self) -> usize {
        HEADER_LEN
            + if self.lead_off.is_empty() {
                0
            } else {
                LEAD_OFF_LEN
            }
    }

    /// Encodes the chunk in the v1 layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        let mut flags = 0u8;
        if self.last {
            flags |= FLAG_LAST;
        }
        if self.clipped {
            flags |= FLAG_CLIPPED;
        }
        if !self.lead_off.is_empty() {
            flags |= FLAG_LEAD_OFF;
        }
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&self.samples_per_lead.to_le_bytes());
        out.extend_from_slice(self.visit_id.as_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.first_sample.to_le_bytes());
        out.extend_from_slice(&self.leads.mask().to_le_bytes());
        out.extend_from_slice(&[0; 4]); // CRC, filled in below
        if !self.lead_off.is_empty() {
            out.extend_from_slice(&self.lead_off.mask().to_le_bytes());
        }
        for sample in &self.samples {
            out.extend_from_slice(&sample.to_le_bytes());
        }
        let crc = crc_of(&out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a chunk. Checks run from cheap to expensive, and
    /// the CRC is verified before any field beyond the framing is trusted.
    pub fn decode(bytes: &[u8]) -> Result<Chunk, WireError> {
        if bytes.len() < HEADER_LEN {
            return Err(WireError::TooShort {
                len: bytes.len(),
                needed: HEADER_LEN,
            });
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        if bytes[4] != VERSION {
            return Err(WireError::UnsupportedVersion { found: bytes[4] });
        }
        let flags = bytes[5];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::UnknownFlags {
                bits: flags & !KNOWN_FLAGS,
            });
        }
        let samples_per_lead = u16::from_le_bytes([bytes[6], bytes[7]]);
        let lead_mask = read_u32(bytes, 32);
        let leads = LeadSet::from_mask(lead_mask).map_err(|source| WireError::UnknownLead {
            mask: lead_mask,
            source,
        })?;
        if leads.is_empty() {
            return Err(WireError::NoLeads);
        }
        if samples_per_lead == 0 {
            return Err(WireError::NoSamples);
        }
        check_sample_bounds(usize::from(samples_per_lead), leads.len())?;

        let header_len = HEADER_LEN
            + if flags & FLAG_LEAD_OFF != 0 {
                LEAD_OFF_LEN
            } else {
                0
            };
        let n_samples = usize::from(samples_per_lead) * leads.len();
        let expected = header_len + 2 * n_samples;
        if bytes.len() != expected {
            return Err(WireError::LengthMismatch {
                expected,
                actual: bytes.len(),
            });
        }
        let stored = read_u32(bytes, CRC_OFFSET);
        let computed = crc_of(bytes);
        if stored != computed {
            return Err(WireError::CrcMismatch { stored, computed });
        }

        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[8..24]);
        let visit_id = VisitId::from_bytes(id).map_err(|_| WireError::NilVisitId)?;
        let seq = read_u32(bytes, 24);
        let first_sample = read_u32(bytes, 28);
        check_index_overflow(first_sample, samples_per_lead)?;

        let lead_off = if flags & FLAG_LEAD_OFF != 0 {
            let mask = read_u32(bytes, HEADER_LEN);
            if mask == 0 {
                return Err(WireError::EmptyLeadOffMask);
            }
            if mask & !leads.mask() != 0 {
                return Err(WireError::LeadOffOutsideLeadSet {
                    lead_off: mask,
                    leads: leads.mask(),
                });
            }
            LeadSet::from_mask(mask).map_err(|source| WireError::UnknownLead { mask, source })?
        } else {
            LeadSet::EMPTY
        };

        let samples = bytes[header_len..]
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        Ok(Chunk {
            visit_id,
            seq,
            first_sample,
            leads,
            samples_per_lead,
            last: flags & FLAG_LAST != 0,
            clipped: flags & FLAG_CLIPPED != 0,
            lead_off,
            samples,
        })
    }
}

/// Encodes `chunk` in the v1 layout (same as [`Chunk::to_bytes`]).
pub fn encode(chunk: &Chunk) -> Vec<u8> {
    chunk.to_bytes()
}

fn check_sample_bounds(samples_per_lead: usize, n_leads: usize) -> Result<u16, WireError> {
    let too_many = || WireError::TooManySamples {
        samples_per_lead,
        n_leads,
        max: MAX_SAMPLES_PER_CHUNK,
    };
    let per_lead = u16::try_from(samples_per_lead).map_err(|_| too_many())?;
    if samples_per_lead * n_leads > MAX_SAMPLES_PER_CHUNK {
        return Err(too_many());
    }
    Ok(per_lead)
}

fn check_index_overflow(first_sample: u32, samples_per_lead: u16) -> Result<(), WireError> {
    // The last sample's index must fit in a u32 too, else the next chunk's
    // first_sample could not be written.
    first_sample
        .checked_add(u32::from(samples_per_lead))
        .map(|_| ())
        .ok_or(WireError::SampleIndexOverflow {
            first_sample,
            samples_per_lead,
        })
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// CRC-32 over the message with the CRC field itself skipped, so header
/// corruption (a wrong visit id or sample index) is caught, not only payload.
fn crc_of(message: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&message[..CRC_OFFSET]);
    hasher.update(&message[CRC_OFFSET + 4..]);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::Lead;
    use proptest::prelude::*;

    fn visit() -> VisitId {
        "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap()
    }

    fn leads_8() -> LeadSet {
        [
            Lead::I,
            Lead::II,
            Lead::V1,
            Lead::V2,
            Lead::V3,
            Lead::V4,
            Lead::V5,
            Lead::V6,
        ]
        .into_iter()
        .collect()
    }

    fn one_second(fs_hz: usize, leads: LeadSet) -> Chunk {
        let samples = (0..fs_hz * leads.len())
            .map(|i| (i % 2000) as i16 - 1000)
            .collect();
        Chunk::new(visit(), 0, 0, leads, samples).unwrap()
    }

    #[test]
    fn header_overhead_is_under_two_percent_of_a_one_second_chunk() {
        for (fs_hz, leads) in [(250, leads_8()), (500, LeadSet::STANDARD_12)] {
            let all_off = one_second(fs_hz, leads).with_lead_off(leads).unwrap();
            for chunk in [one_second(fs_hz, leads), all_off] {
                let total = chunk.to_bytes().len();
                let payload = 2 * fs_hz * leads.len();
                let overhead = (total - payload) as f64 / total as f64;
                assert!(
                    overhead < 0.02,
                    "{fs_hz} Hz x {} leads: {:.2} %",
                    leads.len(),
                    overhead * 100.0
                );
            }
        }
        // The figure the README quotes.
        let c = one_second(250, leads_8());
        assert_eq!(c.to_bytes().len(), HEADER_LEN + 4000);
    }

    #[test]
    fn layout_matches_the_documented_byte_table() {
        let chunk = Chunk::new(
            visit(),
            7,
            1000,
            [Lead::II, Lead::V1].into_iter().collect(),
            vec![1, 2, -1, -2],
        )
        .unwrap()
        .with_last(true)
        .with_lead_off([Lead::V1].into_iter().collect())
        .unwrap();
        let b = chunk.to_bytes();
        assert_eq!(&b[0..4], b"ECGC");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 0b101);
        assert_eq!(&b[6..8], &[2, 0]);
        assert_eq!(&b[8..24], visit().as_bytes());
        assert_eq!(&b[24..28], &[7, 0, 0, 0]);
        assert_eq!(&b[28..32], &1000u32.to_le_bytes());
        assert_eq!(read_u32(&b, 32), (1 << 1) | (1 << 6));
        assert_eq!(read_u32(&b, 40), 1 << 6);
        // Lead-major: both samples of II, then both of V1.
        assert_eq!(&b[44..], &[1, 0, 2, 0, 0xff, 0xff, 0xfe, 0xff]);
        assert_eq!(chunk.lead_samples(1), Some(&[-1i16, -2][..]));
    }

    #[test]
    fn each_corruption_has_its_own_error() {
        let good = one_second(250, leads_8()).to_bytes();
        let with = |at: usize, value: u8| {
            let mut b = good.clone();
            b[at] = value;
            Chunk::decode(&b)
        };
        assert!(matches!(
            Chunk::decode(&good[..10]),
            Err(WireError::TooShort { .. })
        ));
        assert!(matches!(with(0, b'X'), Err(WireError::BadMagic { .. })));
        assert!(matches!(
            with(4, 2),
            Err(WireError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            with(5, 0x80),
            Err(WireError::UnknownFlags { bits: 0x80 })
        ));
        assert!(matches!(with(35, 0x80), Err(WireError::UnknownLead { .. })));
        assert!(matches!(
            Chunk::decode(&good[..good.len() - 1]),
            Err(WireError::LengthMismatch { .. })
        ));
        assert!(matches!(
            with(100, good[100] ^ 1),
            Err(WireError::CrcMismatch { .. })
        ));
        assert!(matches!(
            with(10, good[10] ^ 1),
            Err(WireError::CrcMismatch { .. })
        ));
        let mut no_leads = good.clone();
        no_leads[32..36].copy_from_slice(&[0; 4]);
        assert_eq!(Chunk::decode(&no_leads), Err(WireError::NoLeads));
        let mut huge = good.clone();
        huge[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            Chunk::decode(&huge),
            Err(WireError::TooManySamples { .. })
        ));
    }

    #[test]
    fn semantic_errors_behind_a_valid_crc_are_caught() {
        // Re-stamp a CRC after editing, as a buggy firmware would.
        let restamp = |mut b: Vec<u8>| {
            let crc = crc_of(&b);
            b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let good = one_second(250, leads_8()).to_bytes();
        let mut nil = good.clone();
        nil[8..24].copy_from_slice(&[0; 16]);
        assert_eq!(Chunk::decode(&restamp(nil)), Err(WireError::NilVisitId));
        let mut overflow = good.clone();
        overflow[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Chunk::decode(&restamp(overflow)),
            Err(WireError::SampleIndexOverflow { .. })
        ));

        let with_off = one_second(250, leads_8())
            .with_lead_off([Lead::V1].into_iter().collect())
            .unwrap()
            .to_bytes();
        let mut empty = with_off.clone();
        empty[40..44].copy_from_slice(&[0; 4]);
        assert_eq!(
            Chunk::decode(&restamp(empty)),
            Err(WireError::EmptyLeadOffMask)
        );
        let mut outside = with_off.clone();
        outside[40..44].copy_from_slice(&(1u32 << Lead::V4R.index()).to_le_bytes());
        assert!(matches!(
            Chunk::decode(&restamp(outside)),
            Err(WireError::LeadOffOutsideLeadSet { .. })
        ));
    }

    #[test]
    fn constructor_enforces_the_invariants() {
        let two: LeadSet = [Lead::I, Lead::II].into_iter().collect();
        assert_eq!(
            Chunk::new(visit(), 0, 0, LeadSet::EMPTY, vec![1]),
            Err(WireError::NoLeads)
        );
        assert_eq!(
            Chunk::new(visit(), 0, 0, two, vec![]),
            Err(WireError::NoSamples)
        );
        assert!(matches!(
            Chunk::new(visit(), 0, 0, two, vec![1, 2, 3]),
            Err(WireError::RaggedSamples { .. })
        ));
        assert!(matches!(
            Chunk::new(visit(), 0, 0, LeadSet::STANDARD_12, vec![0; 12 * 6000]),
            Err(WireError::TooManySamples { .. })
        ));
        assert!(matches!(
            Chunk::new(visit(), 0, u32::MAX, two, vec![1, 2]),
            Err(WireError::SampleIndexOverflow { .. })
        ));
        let c = Chunk::new(visit(), 0, 0, two, vec![1, 2]).unwrap();
        assert!(matches!(
            c.with_lead_off([Lead::V1].into_iter().collect()),
            Err(WireError::LeadOffOutsideLeadSet { .. })
        ));
    }

    fn arb_chunk() -> impl Strategy<Value = Chunk> {
        (
            any::<[u8; 16]>().prop_filter("non-nil", |b| b.iter().any(|x| *x != 0)),
            any::<u32>(),
            0u32..u32::MAX - 1000,
            1u32..=LeadSet::KNOWN_BITS,
            1usize..300,
            any::<(bool, bool, u32)>(),
        )
            .prop_flat_map(|(id, seq, first, mask, per_lead, flags)| {
                let leads = LeadSet::from_mask(mask).unwrap();
                let n = per_lead * leads.len();
                proptest::collection::vec(any::<i16>(), n).prop_map(move |samples| {
                    let (last, clipped, off_bits) = flags;
                    let lead_off = LeadSet::from_mask(off_bits & mask).unwrap();
                    Chunk::new(VisitId::from_bytes(id).unwrap(), seq, first, leads, samples)
                        .unwrap()
                        .with_last(last)
                        .with_clipped(clipped)
                        .with_lead_off(lead_off)
                        .unwrap()
                })
            })
    }

    proptest! {
        #[test]
        fn round_trip(chunk in arb_chunk()) {
            let bytes = encode(&chunk);
            prop_assert_eq!(bytes.len(), chunk.encoded_len());
            prop_assert_eq!(Chunk::decode(&bytes), Ok(chunk));
        }

        #[test]
        fn single_bit_flips_never_decode_to_a_different_chunk(chunk in arb_chunk(), bit in any::<prop::sample::Index>()) {
            let mut bytes = chunk.to_bytes();
            let i = bit.index(bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            prop_assert!(Chunk::decode(&bytes).is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn arbitrary_bytes_give_a_typed_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            // Any outcome but a panic is acceptable; random bytes essentially
            // never carry a valid CRC, so an Ok here would be suspicious.
            prop_assert!(Chunk::decode(&bytes).is_err());
        }

        #[test]
        fn plausible_headers_with_random_bodies_give_errors_not_panics(
            flags in any::<u8>(), per_lead in any::<u16>(), mask in any::<u32>(),
            rest in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut bytes = Vec::from(MAGIC);
            bytes.push(VERSION);
            bytes.push(flags);
            bytes.extend_from_slice(&per_lead.to_le_bytes());
            bytes.extend_from_slice(&[1; 24]);
            bytes.extend_from_slice(&mask.to_le_bytes());
            bytes.extend_from_slice(&rest);
            let _ = Chunk::decode(&bytes);
        }
    }
}
