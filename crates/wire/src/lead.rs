//! ECG leads and lead sets.
//!
//! A lead's wire index is its bit in the chunk header's lead mask, and the
//! order of those bits is the one order in which samples travel, are hashed
//! (`samples_sha256`) and are listed in a visit's meta. One canonical order
//! means no message has to carry a permutation that could disagree with
//! another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One ECG lead. The discriminant is the lead's bit in [`LeadSet`] and
/// therefore in the binary chunk header: never renumber within v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Lead {
    I = 0,
    II = 1,
    III = 2,
    AVR = 3,
    AVL = 4,
    AVF = 5,
    V1 = 6,
    V2 = 7,
    V3 = 8,
    V4 = 9,
    V5 = 10,
    V6 = 11,
    /// Right-sided chest leads: right-ventricular involvement of an inferior STEMI.
    V3R = 12,
    V4R = 13,
    V5R = 14,
    V6R = 15,
    /// Posterior chest leads: posterior STEMI, invisible on the standard 12.
    V7 = 16,
    V8 = 17,
    V9 = 18,
    /// Frank orthogonal leads (vectorcardiography, e.g. PTB recordings).
    X = 19,
    Y = 20,
    Z = 21,
    /// Modified limb lead II of ambulatory recorders (e.g. MIT-BIH).
    MLII = 22,
}

/// Error for a lead name or bit that v1 does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    #[error("unknown lead name {0:?}")]
    UnknownName(String),
    #[error("unknown lead index {0} (v1 defines 0..{n})", n = Lead::ALL.len())]
    UnknownIndex(u8),
    #[error("lead {lead} listed out of canonical order or twice (after {previous})")]
    OutOfOrder { lead: Lead, previous: Lead },
}

impl Lead {
    /// Every lead v1 defines, in canonical (wire) order.
    pub const ALL: [Lead; 23] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
        Lead::V3R,
        Lead::V4R,
        Lead::V5R,
        Lead::V6R,
        Lead::V7,
        Lead::V8,
        Lead::V9,
        Lead::X,
        Lead::Y,
        Lead::Z,
        Lead::MLII,
    ];

    /// The standard 12 leads, in canonical order.
    pub const STANDARD_12: [Lead; 12] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// The lead's bit index in a [`LeadSet`] mask.
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The lead with bit index `index`.
    pub fn from_index(index: u8) -> Result<Lead, LeadError> {
        Lead::ALL
            .get(usize::from(index))
            .copied()
            .ok_or(LeadError::UnknownIndex(index))
    }

    /// The name used in JSON and in the archive (`"aVR"`, `"V4R"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Lead::I => "I",
            Lead::II => "II",
            Lead::III => "III",
            Lead::AVR => "aVR",
            Lead::AVL => "aVL",
            Lead::AVF => "aVF",
            Lead::V1 => "V1",
            Lead::V2 => "V2",
            Lead::V3 => "V3",
            Lead::V4 => "V4",
            Lead::V5 => "V5",
            Lead::V6 => "V6",
            Lead::V3R => "V3R",
            Lead::V4R => "V4R",
            Lead::V5R => "V5R",
            Lead::V6R => "V6R",
            Lead::V7 => "V7",
            Lead::V8 => "V8",
            Lead::V9 => "V9",
            Lead::X => "X",
            Lead::Y => "Y",
            Lead::Z => "Z",
            Lead::MLII => "MLII",
        }
    }
}

impl fmt::Display for Lead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Lead {
    type Err = LeadError;

    /// Exact, case-sensitive names only: the wire has one spelling per lead
    /// (mapping recorder spellings such as `avr` or `vx` is the reader's job).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lead::ALL
            .iter()
            .copied()
            .find(|lead| lead.name() == s)
            .ok_or_else(|| LeadError::UnknownName(s.to_owned()))
    }
}

impl Serialize for Lead {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Lead {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of leads, as the chunk header's 32-bit mask. Iteration is always
/// in canonical order, which is the order samples travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LeadSet(u32);

impl LeadSet {
    /// Mask bits that name a lead v1 defines.
    pub const KNOWN_BITS: u32 = (1u32 << Lead::ALL.len()) - 1;

    /// The empty set.
    pub const EMPTY: LeadSet = LeadSet(0);

    /// The standard 12 leads.
    pub const STANDARD_12: LeadSet = LeadSet(0x0fff);

    /// The set for a raw mask; `Err` names the first bit v1 does not define.
    pub fn from_mask(mask: u32) -> Result<LeadSet, LeadError> {
        let unknown = mask & !Self::KNOWN_BITS;
        if unknown != 0 {
            // The lowest unknown bit is < 32, so the cast cannot truncate.
            return Err(LeadError::UnknownIndex(unknown.trailing_zeros() as u8));
        }
        Ok(LeadSet(mask))
    }

    /// The raw mask (bit `Lead::index()` set for each member).
    pub fn mask(self) -> u32 {
        self.0
    }

    pub fn contains(self, lead: Lead) -> bool {
        self.0 & (1 << lead.index()) != 0
    }

    pub fn insert(&mut self, lead: Lead) {
        self.0 |= 1 << lead.index();
    }

    /// Number of leads in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every lead of `self` is also in `other`.
    pub fn is_subset_of(self, other: LeadSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// Position of `lead` in canonical order within this set, i.e. which
    /// lead-major block of a chunk's payload holds its samples.
    pub fn position(self, lead: Lead) -> Option<usize> {
        if !self.contains(lead) {
            return None;
        }
        let below = self.0 & ((1u32 << lead.index()) - 1);
        Some(below.count_ones() as usize)
    }

    /// Members in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Lead> {
        Lead::ALL
            .into_iter()
            .filter(move |lead| self.contains(*lead))
    }

    /// Builds a set from leads given in strictly canonical order, which is
    /// what JSON messages must carry; anything else is an error so that a
    /// listed order can never disagree with the sample order.
    pub fn from_ordered(leads: impl IntoIterator<Item = Lead>) -> Result<LeadSet, LeadError> {
        let mut set = LeadSet::EMPTY;
        let mut previous: Option<Lead> = None;
        for lead in leads {
            if let Some(prev) = previous {
                if lead <= prev {
                    return Err(LeadError::OutOfOrder {
                        lead,
                        previous: prev,
                    });
                }
            }
            set.insert(lead);
            previous = Some(lead);
        }
        Ok(set)
    }
}

impl FromIterator<Lead> for LeadSet {
    /// Collects in any order (duplicates collapse); use
    /// [`LeadSet::from_ordered`] to insist on canonical order.
    fn from_iter<T: IntoIterator<Item = Lead>>(iter: T) -> Self {
        let mut set = LeadSet::EMPTY;
        for lead in iter {
            set.insert(lead);
        }
        set
    }
}

impl Serialize for LeadSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for LeadSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let leads = Vec::<Lead>::deserialize(deserializer)?;
        LeadSet::from_ordered(leads).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_are_positions() {
        for (i, lead) in Lead::ALL.iter().enumerate() {
            assert_eq!(usize::from(lead.index()), i);
            assert_eq!(lead.name().parse::<Lead>(), Ok(*lead));
            assert_eq!(Lead::from_index(lead.index()), Ok(*lead));
        }
        assert!(Lead::from_index(23).is_err());
        assert!("avr".parse::<Lead>().is_err());
    }

    #[test]
    fn standard_12_mask_matches_the_lead_list() {
        let set: LeadSet = Lead::STANDARD_12.into_iter().collect();
        assert_eq!(set, LeadSet::STANDARD_12);
        assert_eq!(set.len(), 12);
    }

    #[test]
    fn unknown_bits_are_rejected() {
        assert_eq!(
            LeadSet::from_mask(1 << 23),
            Err(LeadError::UnknownIndex(23))
        );
        assert!(LeadSet::from_mask(LeadSet::KNOWN_BITS).is_ok());
    }

    #[test]
    fn position_counts_members_below() {
        let set: LeadSet = [Lead::II, Lead::V1, Lead::V5].into_iter().collect();
        assert_eq!(set.position(Lead::II), Some(0));
        assert_eq!(set.position(Lead::V1), Some(1));
        assert_eq!(set.position(Lead::V5), Some(2));
        assert_eq!(set.position(Lead::I), None);
    }

    #[test]
    fn json_lead_lists_must_be_canonical() {
        let ok: LeadSet = serde_json::from_str(r#"["I","aVR","V4R"]"#).unwrap();
        assert_eq!(
            ok.iter().collect::<Vec<_>>(),
            vec![Lead::I, Lead::AVR, Lead::V4R]
        );
        assert!(serde_json::from_str::<LeadSet>(r#"["II","I"]"#).is_err());
        assert!(serde_json::from_str::<LeadSet>(r#"["I","I"]"#).is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"["I","aVR","V4R"]"#);
    }
}
