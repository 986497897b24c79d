//! The lifecycle states stored as text: a credential's status and a version's state. The
//! store holds their `as_str` spelling (the SQL in `core` names the same literals, e.g. the
//! partial unique index on `state = 'current'`); everything else handles these enums.

use serde::{Deserialize, Serialize};

/// A credential's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    /// Resolvable and attachable.
    Active,
    /// Kept, but every resolve is refused until it is enabled again.
    Disabled,
    /// Soft-deleted: restorable until the recovery window ends, then purged.
    PendingDeletion,
    /// A tombstone: the key material is destroyed.
    Purged,
}

impl CredentialStatus {
    /// Every status.
    pub const ALL: [CredentialStatus; 4] = [
        CredentialStatus::Active,
        CredentialStatus::Disabled,
        CredentialStatus::PendingDeletion,
        CredentialStatus::Purged,
    ];

    /// The stored and wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Disabled => "disabled",
            CredentialStatus::PendingDeletion => "pending_deletion",
            CredentialStatus::Purged => "purged",
        }
    }

    /// The status for a stored spelling.
    pub fn parse(s: &str) -> Option<CredentialStatus> {
        CredentialStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for CredentialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential version's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Staged: not resolved until promoted.
    Pending,
    /// The one version resolves get (at most one per credential).
    Current,
    /// The version before the current one, resolvable within the grace period.
    Previous,
    /// Never resolvable again.
    Revoked,
}

impl VersionState {
    /// Every state.
    pub const ALL: [VersionState; 4] = [
        VersionState::Pending,
        VersionState::Current,
        VersionState::Previous,
        VersionState::Revoked,
    ];

    /// The stored and wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            VersionState::Pending => "pending",
            VersionState::Current => "current",
            VersionState::Previous => "previous",
            VersionState::Revoked => "revoked",
        }
    }

    /// The state for a stored spelling.
    pub fn parse(s: &str) -> Option<VersionState> {
        VersionState::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for VersionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{CredentialStatus, VersionState};

    #[test]
    fn spellings_round_trip_through_parse_and_serde() {
        for s in CredentialStatus::ALL {
            assert_eq!(CredentialStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for v in VersionState::ALL {
            assert_eq!(VersionState::parse(v.as_str()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(CredentialStatus::parse("expired"), None);
        assert_eq!(VersionState::parse("staged"), None);
    }
}
