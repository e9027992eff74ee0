//! Revision lifecycle and which revision of an id is current.

use serde::{Deserialize, Serialize};

/// Whether a revision may be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    /// Runs normally.
    Active,
    /// Still runs, flagged.
    Deprecated,
    /// Refused by the workflow engine at execution time.
    Frozen,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Deprecated => "DEPRECATED",
            Self::Frozen => "FROZEN",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Deprecated, Self::Frozen]
            .into_iter()
            .find(|l| l.as_str() == text)
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The revision `GetCapability(id)` returns: the highest ACTIVE version by
/// semantic-version precedence; when no revision is ACTIVE, the highest
/// version whatever its lifecycle, so that callers see a DEPRECATED or FROZEN
/// capability (and refuse or flag it) instead of "unknown".
pub fn current_version(revisions: &[(semver::Version, Lifecycle)]) -> Option<&semver::Version> {
    let highest = |active_only: bool| {
        revisions
            .iter()
            .filter(|(_, lifecycle)| !active_only || *lifecycle == Lifecycle::Active)
            .map(|(version, _)| version)
            .max_by(|a, b| a.cmp_precedence(b).then_with(|| a.cmp(b)))
    };
    highest(true).or_else(|| highest(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> semver::Version {
        semver::Version::parse(text).expect("semver")
    }

    #[test]
    fn the_highest_active_version_is_current() {
        let revisions = [
            (v("1.2.0"), Lifecycle::Active),
            (v("1.10.0"), Lifecycle::Active),
            (v("2.0.0-rc.1"), Lifecycle::Active),
            (v("1.9.0"), Lifecycle::Active),
        ];
        assert_eq!(current_version(&revisions), Some(&v("2.0.0-rc.1")));
        let revisions = [
            (v("2.0.0-rc.1"), Lifecycle::Active),
            (v("2.0.0"), Lifecycle::Active),
        ];
        assert_eq!(
            current_version(&revisions),
            Some(&v("2.0.0")),
            "a release outranks its pre-release"
        );
    }

    #[test]
    fn frozen_versions_are_skipped_while_an_active_one_exists() {
        let revisions = [
            (v("1.0.0"), Lifecycle::Active),
            (v("2.0.0"), Lifecycle::Frozen),
        ];
        assert_eq!(current_version(&revisions), Some(&v("1.0.0")));
    }

    #[test]
    fn without_an_active_version_the_highest_is_current_so_its_lifecycle_shows() {
        let revisions = [
            (v("1.0.0"), Lifecycle::Deprecated),
            (v("2.0.0"), Lifecycle::Frozen),
        ];
        assert_eq!(current_version(&revisions), Some(&v("2.0.0")));
        assert_eq!(current_version(&[]), None);
    }
}
