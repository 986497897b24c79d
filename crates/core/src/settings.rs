//! An organization's settings: enabled credential types, role policy, attachment policy and
//! recovery window. Stored as one JSON document per organization; unknown keys are refused so
//! a typo in a PATCH is an error, not a silently ignored setting.

use credvault_domain::problems::Code;
use serde::{Deserialize, Serialize};

use credvault_domain::credential_types::CredentialType;
use credvault_domain::roles::RolePolicy;
use credvault_store::Tx;

use crate::error::{CoreError, CoreResult};

/// The settings of one organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    /// Credential types members may create (and see in the type list).
    pub enabled_types: Vec<CredentialType>,
    /// Whether a credential of another environment may be attached with a written reason.
    pub allow_environment_override: bool,
    /// Days a deleted credential can be restored before its keys are destroyed.
    pub recovery_window_days: u32,
    /// Which roles hold the movable permissions.
    pub role_policy: RolePolicy,
    /// Hours a `previous` version keeps resolving after a promotion (0: only `current`).
    #[serde(default)]
    pub previous_grace_hours: u32,
    /// Hours an expired credential keeps resolving (0: it stops at expiry).
    #[serde(default)]
    pub expired_grace_hours: u32,
    /// Days before expiry (`credential.expiring`) and before a rotation period ends
    /// (`credential.rotation_due`) at which alerts fire.
    #[serde(default = "default_alert_days")]
    pub expiry_alert_days: Vec<u32>,
    /// Disable a credential automatically when workers report failed logins at its target
    /// past the `target_auth_failures_per_credential` threshold.
    #[serde(default)]
    pub auto_disable_on_target_auth_failures: bool,
}

fn default_alert_days() -> Vec<u32> {
    vec![30, 7, 1]
}

impl Default for OrgSettings {
    fn default() -> Self {
        OrgSettings {
            enabled_types: CredentialType::ALL.to_vec(),
            allow_environment_override: false,
            recovery_window_days: 7,
            role_policy: RolePolicy::default(),
            previous_grace_hours: 0,
            expired_grace_hours: 0,
            expiry_alert_days: default_alert_days(),
            auto_disable_on_target_auth_failures: false,
        }
    }
}

/// A partial update of [`OrgSettings`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// New enabled types.
    pub enabled_types: Option<Vec<CredentialType>>,
    /// New override policy.
    pub allow_environment_override: Option<bool>,
    /// New recovery window.
    pub recovery_window_days: Option<u32>,
    /// New role policy.
    pub role_policy: Option<RolePolicy>,
    /// New grace for `previous` versions.
    pub previous_grace_hours: Option<u32>,
    /// New grace for expired credentials.
    pub expired_grace_hours: Option<u32>,
    /// New expiry alert thresholds.
    pub expiry_alert_days: Option<Vec<u32>>,
    /// New auto-disable policy.
    pub auto_disable_on_target_auth_failures: Option<bool>,
}

impl OrgSettings {
    /// Applies a patch, checking each value.
    pub fn apply(&mut self, p: SettingsPatch) -> CoreResult<()> {
        if let Some(mut t) = p.enabled_types {
            t.sort();
            t.dedup();
            self.enabled_types = t;
        }
        if let Some(b) = p.allow_environment_override {
            self.allow_environment_override = b;
        }
        if let Some(d) = p.recovery_window_days {
            if !(1..=365).contains(&d) {
                return Err(CoreError::invalid(
                    "recovery_window_days",
                    Code::OutOfRange,
                    "must be between 1 and 365",
                ));
            }
            self.recovery_window_days = d;
        }
        if let Some(rp) = p.role_policy {
            self.role_policy = rp;
        }
        if let Some(h) = p.previous_grace_hours {
            if h > 24 * 90 {
                return Err(CoreError::invalid(
                    "previous_grace_hours",
                    Code::OutOfRange,
                    "must be at most 2160 (90 days)",
                ));
            }
            self.previous_grace_hours = h;
        }
        if let Some(h) = p.expired_grace_hours {
            if h > 24 * 90 {
                return Err(CoreError::invalid(
                    "expired_grace_hours",
                    Code::OutOfRange,
                    "must be at most 2160 (90 days)",
                ));
            }
            self.expired_grace_hours = h;
        }
        if let Some(b) = p.auto_disable_on_target_auth_failures {
            self.auto_disable_on_target_auth_failures = b;
        }
        if let Some(mut d) = p.expiry_alert_days {
            if d.len() > 10 || d.iter().any(|x| *x == 0 || *x > 365) {
                return Err(CoreError::invalid(
                    "expiry_alert_days",
                    Code::OutOfRange,
                    "up to 10 thresholds between 1 and 365 days",
                ));
            }
            d.sort_unstable_by(|a, b| b.cmp(a));
            d.dedup();
            self.expiry_alert_days = d;
        }
        Ok(())
    }

    /// Loads the settings of `org_id`, or `None` if there is no such organization.
    pub fn load(tx: &mut dyn Tx, org_id: &str) -> CoreResult<Option<OrgSettings>> {
        match tx.query_opt("SELECT settings FROM orgs WHERE id = $1", &[org_id.into()])? {
            Some(r) => Ok(Some(serde_json::from_str(&r.text(0)?)?)),
            None => Ok(None),
        }
    }
}
