//! What the rules need to know about the patient.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

impl std::str::FromStr for Sex {
    type Err = crate::TriageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "m" | "male" | "man" => Ok(Sex::Male),
            "f" | "female" | "woman" => Ok(Sex::Female),
            _ => Err(crate::TriageError::InvalidSex(s.to_string())),
        }
    }
}

/// Sex and age, both optional: unknown values select the threshold that misses least.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Patient {
    pub sex: Option<Sex>,
    pub age_years: Option<f64>,
}
