//! What the service returns and accepts: plain serde types shared with the API layer (and its
//! OpenAPI document). Response types never hold a secret, with two deliberate exceptions that
//! are marked: [`CreatedToken`] (a new token, shown once) and [`Resolved`]-style payloads.

use credvault_domain::problems::Code;
use credvault_domain::states::{CredentialStatus, VersionState};
use serde::{Deserialize, Serialize};

use credvault_domain::time::to_rfc3339;

use crate::error::{CoreError, CoreResult};

/// A page of a list, with the cursor for the next page (`null` on the last one).
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Opaque cursor for the next page.
    pub next_cursor: Option<String>,
}

/// Encodes an internal position as an opaque cursor.
pub fn encode_cursor(seq: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

/// Decodes a cursor produced by [`encode_cursor`].
pub fn decode_cursor(c: Option<&str>) -> CoreResult<i64> {
    use base64::Engine;
    let Some(c) = c else { return Ok(0) };
    let bad = || CoreError::invalid("cursor", Code::InvalidCursor, "is not a cursor returned by this API");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.strip_prefix("v1:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(bad)
}

/// Renders an optional timestamp.
pub fn ts(us: Option<i64>) -> Option<String> {
    us.map(to_rfc3339)
}

/// An organization.
#[derive(Clone, Debug, Serialize)]
pub struct OrgView {
    /// `org_…`
    pub id: String,
    /// Unique name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A workspace.
#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceView {
    /// `ws_…`
    pub id: String,
    /// Its organization.
    pub org_id: String,
    /// Unique within the organization.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A principal.
#[derive(Clone, Debug, Serialize)]
pub struct PrincipalView {
    /// `usr_…` or `sa_…`
    pub id: String,
    /// Its organization.
    pub org_id: String,
    /// `user` or `service_account`.
    pub kind: String,
    /// Unique within the organization.
    pub name: String,
    /// May create organizations.
    pub instance_admin: bool,
    /// Disabled principals cannot authenticate.
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Role bindings (on reads of a single principal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindings: Option<Vec<RoleBindingView>>,
}

/// A role binding.
#[derive(Clone, Debug, Serialize)]
pub struct RoleBindingView {
    /// `rb_…`
    pub id: String,
    /// Who.
    pub principal_id: String,
    /// Which role.
    pub role: String,
    /// The organization.
    pub org_id: String,
    /// The workspace, or `null` for an organization-wide binding.
    pub workspace_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// A token's metadata (never the token).
#[derive(Clone, Debug, Serialize)]
pub struct TokenView {
    /// `tok_…`
    pub id: String,
    /// Whose.
    pub principal_id: String,
    /// Optional label.
    pub name: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 or `null`.
    pub expires_at: Option<String>,
    /// RFC 3339 or `null`.
    pub revoked_at: Option<String>,
}

/// A freshly created token. `token` is shown once and stored only as a hash.
#[derive(Serialize)]
pub struct CreatedToken {
    /// `tok_…`
    pub id: String,
    /// The bearer token (secret, shown once).
    pub token: String,
    /// Whose.
    pub principal_id: String,
    /// Optional label.
    pub name: Option<String>,
    /// RFC 3339 or `null`.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl Drop for CreatedToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

/// One version of a credential (metadata only).
#[derive(Clone, Debug, Serialize)]
pub struct VersionView {
    /// 1, 2, …
    pub version: i64,
    /// `pending`, `current`, `previous` or `revoked`.
    pub state: VersionState,
    /// RFC 3339.
    pub created_at: String,
    /// Principal ID.
    pub created_by: String,
    /// Secret fields this version holds.
    pub secret_fields_set: Vec<String>,
    /// When a resolve last returned this version (RFC 3339, one-second grain): an old version
    /// no longer resolved is safe to revoke.
    pub last_resolved_at: Option<String>,
}

/// A credential's metadata. Secret fields appear only by name in `secret_fields_set`.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialView {
    /// `cred_…`
    pub id: String,
    /// Unique within its scope.
    pub name: String,
    /// One of the seven types.
    #[serde(rename = "type")]
    pub ty: String,
    /// Variant, or `null` for single-variant types.
    pub variant: Option<String>,
    /// The organization.
    pub org_id: String,
    /// The workspace, or `null` for an organization-wide credential.
    pub workspace_id: Option<String>,
    /// Environment tag.
    pub environment: String,
    /// Labels (system, owner_team, any key=value).
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Free text.
    pub description: Option<String>,
    /// `active`, `disabled`, `pending_deletion` or `purged`.
    pub status: CredentialStatus,
    /// RFC 3339 or `null`.
    pub expires_at: Option<String>,
    /// Days, or `null`.
    pub rotation_period_days: Option<i64>,
    /// Non-secret fields of the current version.
    pub fields: serde_json::Value,
    /// Secret fields set in the current version.
    pub secret_fields_set: Vec<String>,
    /// The current version number.
    pub current_version: i64,
    /// All versions, oldest first.
    pub versions: Vec<VersionView>,
    /// Principal that owns the credential.
    pub owner_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Principal ID.
    pub created_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339 or `null`.
    pub deleted_at: Option<String>,
    /// RFC 3339 or `null`.
    pub last_used_at: Option<String>,
    /// Review hints, e.g. a name that follows the `prod-` convention but is tagged `dev`.
    pub warnings: Vec<String>,
    /// OAuth credentials: the grant's health (absent for other types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthHealth>,
    /// Where the secret may be sent: hosts, `*.suffix`, IPs, CIDRs, each with an optional
    /// port (set by those who may change the credential; see PRODUCT.md §3).
    pub allowed_destinations: Vec<String>,
    /// Destinations the current version's own non-secret fields name (an OAuth token URL, an
    /// SSH bastion): allowed for this credential too.
    pub field_destinations: Vec<String>,
}

/// The health of an OAuth credential's grant, as reads show it.
#[derive(Clone, Debug, Serialize)]
pub struct OAuthHealth {
    /// `healthy`, `refresh_failing`, `needs_reauthorization` or `not_authorized`.
    pub health: String,
    /// Why, when not healthy.
    pub health_reason: Option<String>,
    /// Who consented.
    pub authorized_by: Option<String>,
    /// Last successful refresh, RFC 3339.
    pub refreshed_at: Option<String>,
}

/// Request: create an organization.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Unique name.
    pub name: String,
}

/// Request: create a workspace.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// The organization.
    pub org_id: credvault_domain::OrgId,
    /// Unique within the organization.
    pub name: String,
}

/// Request: create a principal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    /// The organization.
    pub org_id: credvault_domain::OrgId,
    /// `user` or `service_account`.
    pub kind: credvault_domain::PrincipalKind,
    /// Unique within the organization.
    pub name: String,
}

/// Request: bind a role.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleBinding {
    /// Who.
    pub principal_id: credvault_domain::PrincipalId,
    /// Which role.
    pub role: credvault_domain::roles::Role,
    /// A workspace scope…
    pub workspace_id: Option<credvault_domain::WorkspaceId>,
    /// …or an organization scope.
    pub org_id: Option<credvault_domain::OrgId>,
}

/// Request: create a token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// For whom.
    pub principal_id: credvault_domain::PrincipalId,
    /// Optional label.
    pub name: Option<String>,
    /// Optional expiry, RFC 3339.
    pub expires_at: Option<String>,
}

/// Request: create a credential. `fields` holds secrets; it is validated against the type's
/// schema, split, and the secret part sealed before anything is stored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// Unique within its scope.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Workspace scope…
    #[serde(default)]
    pub workspace_id: Option<credvault_domain::WorkspaceId>,
    /// …or organization scope.
    #[serde(default)]
    pub org_id: Option<credvault_domain::OrgId>,
    /// Environment tag.
    pub environment: String,
    /// Labels.
    #[serde(default)]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Days.
    #[serde(default)]
    pub rotation_period_days: Option<i64>,
    /// Where the secret may be sent (hosts, `*.suffix`, IPs, CIDRs, optional `:port`).
    #[serde(default)]
    pub allowed_destinations: Option<Vec<String>>,
    /// The fields, secret ones included.
    pub fields: serde_json::Value,
}

impl std::fmt::Debug for CreateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateCredential")
            .field("name", &self.name)
            .field("type", &self.ty)
            .finish_non_exhaustive()
    }
}

impl Drop for CreateCredential {
    fn drop(&mut self) {
        credvault_domain::secret::zeroize_json(&mut self.fields);
    }
}

/// Request: change a credential's metadata. Absent fields stay; `null` clears the optional
/// ones (`description`, `expires_at`, `rotation_period_days`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchCredential {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// Replaces all labels.
    #[serde(default)]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
    /// New description.
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    /// New expiry.
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<String>>,
    /// New rotation period.
    #[serde(default, deserialize_with = "double_option")]
    pub rotation_period_days: Option<Option<i64>>,
    /// Replaces the allowed destinations (narrowing or widening).
    #[serde(default)]
    pub allowed_destinations: Option<Vec<String>>,
}

fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// How a new version enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionMode {
    /// As `pending`, to be tested and promoted.
    Stage,
    /// As `current` at once; the old current version is revoked (update in place).
    Replace,
}

/// Request: add a version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// The complete fields of the new version.
    pub fields: serde_json::Value,
    /// `stage` (default) or `replace`.
    #[serde(default = "default_mode")]
    pub mode: VersionMode,
    /// Top-level fields to carry over, secrets included, from the current version instead of
    /// entering them again (e.g. `ssh_tunnel` when only the database password changes).
    #[serde(default)]
    pub keep: Vec<String>,
}

fn default_mode() -> VersionMode {
    VersionMode::Stage
}

impl std::fmt::Debug for CreateVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateVersion")
            .field("mode", &self.mode)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl Drop for CreateVersion {
    fn drop(&mut self) {
        credvault_domain::secret::zeroize_json(&mut self.fields);
    }
}

/// Response: a version was added.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedVersion {
    /// The credential.
    pub credential_id: String,
    /// The new version number.
    pub version: i64,
    /// `pending` or `current`.
    pub state: VersionState,
}

/// Response: plaintext fields of a credential version (reveal). Secret: zeroized on drop,
/// redacted in `Debug`.
#[derive(Serialize)]
pub struct Revealed {
    /// The credential.
    pub id: String,
    /// The version.
    pub version: i64,
    /// All fields, secret ones included.
    pub fields: serde_json::Value,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revealed")
            .field("id", &self.id)
            .field("fields", &"[redacted]")
            .finish()
    }
}

impl Drop for Revealed {
    fn drop(&mut self) {
        credvault_domain::secret::zeroize_json(&mut self.fields);
    }
}

/// Filters of the credential list.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFilter {
    /// Only this organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only this type.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// `key:value` label filters (all must match).
    #[serde(default)]
    pub label: Vec<String>,
    /// Case-insensitive substring of the name or description.
    pub q: Option<String>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// Filters of the audit query.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor_id: Option<String>,
    /// Only this target.
    pub target_id: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
    /// Cursor.
    pub cursor: Option<String>,
    /// Only events after this sequence number (for tailing).
    pub after_seq: Option<i64>,
    /// Page size.
    pub limit: Option<usize>,
}
