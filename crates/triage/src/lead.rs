//! Lead names, anatomical contiguity and territories.

use serde::Serialize;

/// A lead of the 12-lead ECG or of its posterior / right-sided extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LeadName {
    I,
    II,
    III,
    AVR,
    AVL,
    AVF,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V3R,
    V4R,
}

/// The twelve standard leads, in the conventional display order.
pub const STANDARD_LEADS: [LeadName; 12] = [
    LeadName::I,
    LeadName::II,
    LeadName::III,
    LeadName::AVR,
    LeadName::AVL,
    LeadName::AVF,
    LeadName::V1,
    LeadName::V2,
    LeadName::V3,
    LeadName::V4,
    LeadName::V5,
    LeadName::V6,
];

impl LeadName {
    /// Parses the lead labels found in WFDB headers ("i", "II", "aVR", "V1", "v4r", "MLII").
    /// Returns `None` for leads that are not part of the 12-lead system or its extensions
    /// (Frank leads, "MLII"-style ambulatory leads are accepted only where they are standard).
    pub fn parse(label: &str) -> Option<LeadName> {
        let l = label.trim().to_ascii_lowercase();
        Some(match l.as_str() {
            "i" | "lead i" | "di" => LeadName::I,
            "ii" | "lead ii" | "dii" | "mlii" => LeadName::II,
            "iii" | "lead iii" | "diii" => LeadName::III,
            "avr" | "-avr" => LeadName::AVR,
            "avl" => LeadName::AVL,
            "avf" => LeadName::AVF,
            "v1" => LeadName::V1,
            "v2" => LeadName::V2,
            "v3" => LeadName::V3,
            "v4" => LeadName::V4,
            "v5" => LeadName::V5,
            "v6" => LeadName::V6,
            "v7" => LeadName::V7,
            "v8" => LeadName::V8,
            "v9" => LeadName::V9,
            "v3r" => LeadName::V3R,
            "v4r" => LeadName::V4R,
            _ => return None,
        })
    }

    /// The conventional label ("I", "aVR", "V1").
    pub fn label(self) -> &'static str {
        match self {
            LeadName::I => "I",
            LeadName::II => "II",
            LeadName::III => "III",
            LeadName::AVR => "aVR",
            LeadName::AVL => "aVL",
            LeadName::AVF => "aVF",
            LeadName::V1 => "V1",
            LeadName::V2 => "V2",
            LeadName::V3 => "V3",
            LeadName::V4 => "V4",
            LeadName::V5 => "V5",
            LeadName::V6 => "V6",
            LeadName::V7 => "V7",
            LeadName::V8 => "V8",
            LeadName::V9 => "V9",
            LeadName::V3R => "V3R",
            LeadName::V4R => "V4R",
        }
    }

    /// Whether the lead is posterior (V7-V9) or right-sided (V3R, V4R), where the 4th UDMI
    /// lowers the ST-elevation threshold to 0.5 mm.
    pub fn is_posterior_or_right(self) -> bool {
        matches!(
            self,
            LeadName::V7 | LeadName::V8 | LeadName::V9 | LeadName::V3R | LeadName::V4R
        )
    }

    /// The territory the lead looks at, if it is used for localisation.
    pub fn territory(self) -> Option<Territory> {
        use LeadName::*;
        Some(match self {
            V1 | V2 => Territory::Septal,
            V3 | V4 => Territory::Anterior,
            I | AVL | V5 | V6 => Territory::Lateral,
            II | III | AVF => Territory::Inferior,
            V7 | V8 | V9 => Territory::Posterior,
            V3R | V4R => Territory::RightVentricular,
            AVR => return None,
        })
    }
}

impl std::fmt::Display for LeadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A region of the left (or right) ventricle, named by the leads facing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Territory {
    Septal,
    Anterior,
    Lateral,
    Inferior,
    Posterior,
    RightVentricular,
}

impl std::fmt::Display for Territory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Territory::Septal => "septal",
            Territory::Anterior => "anterior",
            Territory::Lateral => "lateral",
            Territory::Inferior => "inferior",
            Territory::Posterior => "posterior",
            Territory::RightVentricular => "right_ventricular",
        })
    }
}

/// Whether two leads are anatomically contiguous in the sense of the 4th UDMI:
/// neighbouring precordial leads, leads of the inferior group, the high lateral pair
/// (I, aVL), the low lateral pair (V5, V6), and the posterior / right-sided neighbours.
pub fn contiguous(a: LeadName, b: LeadName) -> bool {
    use LeadName::*;
    if a == b {
        return false;
    }
    let groups: [&[LeadName]; 5] = [
        &[II, III, AVF],
        &[I, AVL],
        &[V7, V8, V9],
        &[V3R, V4R],
        &[V6, V7],
    ];
    if groups.iter().any(|g| g.contains(&a) && g.contains(&b)) {
        return true;
    }
    let precordial = [V1, V2, V3, V4, V5, V6];
    match (
        precordial.iter().position(|&x| x == a),
        precordial.iter().position(|&x| x == b),
    ) {
        (Some(i), Some(j)) => i.abs_diff(j) == 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_labels() {
        assert_eq!(LeadName::parse("aVR"), Some(LeadName::AVR));
        assert_eq!(LeadName::parse("v6"), Some(LeadName::V6));
        assert_eq!(LeadName::parse("III"), Some(LeadName::III));
        assert_eq!(LeadName::parse("vx"), None);
    }

    #[test]
    fn contiguity_follows_anatomy() {
        use LeadName::*;
        assert!(contiguous(V2, V3));
        assert!(!contiguous(V1, V3));
        assert!(contiguous(III, AVF));
        assert!(contiguous(I, AVL));
        assert!(!contiguous(AVL, III));
        assert!(!contiguous(V4, V4));
    }
}
