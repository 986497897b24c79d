//! The request and response shapes of connections, pipelines and usage.

use super::*;

/// A connection.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionView {
    /// `conn_…`
    pub id: String,
    /// Unique within the workspace.
    pub name: String,
    /// The organization.
    pub org_id: String,
    /// The workspace.
    pub workspace_id: String,
    /// Environment tag.
    pub environment: String,
    /// Connector kind.
    pub kind: String,
    /// Non-secret configuration.
    pub config: Json,
    /// The attached credential, or `null`.
    pub credential_id: Option<String>,
    /// Why an environment mismatch was allowed, if it was.
    pub override_reason: Option<String>,
    /// When the credential was attached.
    pub attached_at: Option<String>,
    /// Who attached it.
    pub attached_by: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Review hints (naming convention, environment override).
    pub warnings: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Principal ID.
    pub created_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Last resolve, RFC 3339.
    pub last_used_at: Option<String>,
    /// The last Test connection, if any.
    pub last_test: Option<LastTest>,
}

/// The last Test connection of a connection.
#[derive(Clone, Debug, Serialize)]
pub struct LastTest {
    /// RFC 3339.
    pub at: String,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: i64,
    /// The error code when it failed.
    pub error_code: Option<String>,
    /// The credential version tested.
    pub version: Option<i64>,
}

/// A pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineView {
    /// `pl_…`
    pub id: String,
    /// Unique within the workspace.
    pub name: String,
    /// The organization.
    pub org_id: String,
    /// The workspace.
    pub workspace_id: String,
    /// Connections it uses.
    pub connection_ids: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Principal ID.
    pub created_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Last resolve for this pipeline, RFC 3339.
    pub last_used_at: Option<String>,
}

/// Request: create a connection.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Unique within the workspace.
    pub name: String,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Environment tag.
    pub environment: String,
    /// Connector kind.
    pub kind: String,
    /// Non-secret configuration.
    #[serde(default)]
    pub config: Json,
    /// A credential to attach at once.
    #[serde(default)]
    pub credential_id: Option<CredentialId>,
    /// Needed when the credential's environment differs and the policy allows overrides.
    #[serde(default)]
    pub override_reason: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Request: change a connection.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New configuration (replaces the old one; validated).
    #[serde(default)]
    pub config: Option<Json>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Request: attach a credential.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachCredential {
    /// The credential.
    pub credential_id: CredentialId,
    /// Needed for an allowed environment mismatch.
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// Request: create a pipeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePipeline {
    /// Unique within the workspace.
    pub name: String,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Connections of the same workspace.
    #[serde(default)]
    pub connection_ids: Vec<ConnectionId>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Request: change a pipeline.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchPipeline {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// Replaces the connection list.
    #[serde(default)]
    pub connection_ids: Option<Vec<ConnectionId>>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Filters of the connection list.
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilter {
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only connections using this credential.
    pub credential_id: Option<String>,
    /// Cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// Filters of the pipeline list.
#[derive(Clone, Debug, Default)]
pub struct PipelineFilter {
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only pipelines using this connection.
    pub connection_id: Option<String>,
    /// Cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// What uses a credential.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    /// Connections that reference it (or, with `via_credential_id`, a credential whose AWS
    /// role chain starts from it).
    pub connections: Vec<UsageRef>,
    /// Pipelines that reference those connections.
    pub pipelines: Vec<UsageRef>,
    /// Credentials whose current version uses it as the source of an AWS role chain.
    pub chained_credentials: Vec<UsageRef>,
}

/// A reference in a usage listing.
#[derive(Clone, Debug, Serialize)]
pub struct UsageRef {
    /// ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Workspace.
    pub workspace_id: String,
    /// Environment (connections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The chain credential through which this uses the credential, if not directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_credential_id: Option<String>,
}

/// Result of detach-all.
#[derive(Clone, Debug, Serialize)]
pub struct DetachAll {
    /// Connections that lost the credential.
    pub detached: Vec<UsageRef>,
    /// Pipelines that depend on them (what breaks now).
    pub affected_pipelines: Vec<UsageRef>,
}
