//! Schema compatibility levels as Confluent's REST API names them: the contract between the
//! registry client (which sets a subject's level) and `vaxtrail-registry` (which enforces it).

use std::{fmt, str::FromStr};

/// A subject's compatibility level, as Confluent names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    /// Confluent's default when nothing is configured.
    pub const DEFAULT: Self = Self::Backward;

    const NAMES: [(Self, &'static str); 7] = [
        (Self::None, "NONE"),
        (Self::Backward, "BACKWARD"),
        (Self::BackwardTransitive, "BACKWARD_TRANSITIVE"),
        (Self::Forward, "FORWARD"),
        (Self::ForwardTransitive, "FORWARD_TRANSITIVE"),
        (Self::Full, "FULL"),
        (Self::FullTransitive, "FULL_TRANSITIVE"),
    ];

    /// Whether a new schema is checked against every version, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// Whether a new schema must read data written with the old ones.
    pub fn new_reads_old(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Whether the old schemas must read data written with a new one.
    pub fn old_reads_new(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES.iter().find(|(level, _)| level == self).map(|(_, n)| *n);
        f.write_str(name.expect("every level has a name"))
    }
}

impl FromStr for CompatibilityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(s))
            .map(|(level, _)| *level)
            .ok_or_else(|| format!("unknown compatibility level {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_print_as_confluent_names_them() {
        let level: CompatibilityLevel = "backward_transitive".parse().unwrap();
        assert_eq!(level, CompatibilityLevel::BackwardTransitive);
        assert_eq!(level.to_string(), "BACKWARD_TRANSITIVE");
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    }
}
