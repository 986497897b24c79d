//! The subcommands' clap types, one enum per group.

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCmd {
    /// Which key wraps how many data keys.
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add a new primary key, then re-wrap every data key under it (payloads untouched).
    Rotate {
        #[command(flatten)]
        server: ServerArgs,
        /// Seconds to wait for running servers to pick up the new key file.
        #[arg(long, default_value_t = 3)]
        wait_secs: u64,
    },
    /// Resume re-wrapping after an interruption.
    Rewrap {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Wrap the key file with an AWS KMS key (credentials from AWS_* variables); the server
    /// then unwraps it through KMS at start-up and the plain file is shredded.
    KmsWrap {
        #[command(flatten)]
        server: ServerArgs,
        /// KMS key ID, ARN or alias.
        #[arg(long)]
        kms_key_id: String,
        #[arg(long, default_value = "us-east-1")]
        kms_region: String,
        /// Endpoint override (private endpoints, tests).
        #[arg(long)]
        kms_endpoint: Option<String>,
    },
    /// Turn a KMS-wrapped keyring back into a plain key file.
    KmsUnwrap {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a key that no data key uses any more.
    Retire {
        #[command(flatten)]
        server: ServerArgs,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum AuditCmd {
    /// Print events as JSON lines (`--follow` keeps polling for new ones).
    Tail {
        #[arg(long)]
        follow: bool,
        /// Only this action.
        #[arg(long)]
        action: Option<String>,
        /// RFC 3339 start.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        org: Option<String>,
    },
    /// Export the journal (streamed page by page, progress on stderr).
    Export {
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Verify the hash chain: through the server (default), offline on a store (--offline with
    /// --data-dir/--database-url), or on an exported JSONL file (--file).
    Verify {
        #[arg(long)]
        org: Option<String>,
        /// An exported JSONL file to verify without any server or database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Verify every chain directly in the store.
        #[arg(long)]
        offline: bool,
        /// With --file: a trusted checkpoint public key (base64, from `audit public-keys`);
        /// every signed checkpoint must be signed by one of them, and there must be one.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Append a signed checkpoint to every chain with new events (against the store, like
    /// `scheduler tick`; `audit_checkpoint_interval_secs` makes the server do it periodically).
    Checkpoint {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The checkpoint public keys of the keyring, to verify exports with.
    PublicKeys {
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum IncidentCmd {
    /// Disable + detach-all + list the dependent pipelines, in one step.
    Disable { credential: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum SchedulerCmd {
    /// Run one pass against the store (expiry alerts, grace ends, purges), at --now or the clock.
    Tick {
        #[command(flatten)]
        server: ServerArgs,
        /// RFC 3339 time to run the pass at.
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ConnectionCmd {
    /// Create a connection; config as --set key=value (repeatable) and/or --config-file JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        workspace: String,
        #[arg(long = "env")]
        environment: String,
        #[arg(long)]
        kind: String,
        /// Config value key=value, repeatable (numbers and true/false are typed).
        #[arg(long = "set")]
        set: Vec<String>,
        #[arg(long)]
        config_file: Option<PathBuf>,
        #[arg(long)]
        credential: Option<String>,
        #[arg(long)]
        override_reason: Option<String>,
    },
    /// List connections.
    List {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        credential: Option<String>,
    },
    /// Show a connection.
    Show { id: String },
    /// Attach a credential.
    Attach {
        id: String,
        credential: String,
        #[arg(long)]
        override_reason: Option<String>,
    },
    /// Detach the credential.
    Detach { id: String },
    /// Test connection: connect to the target with the credential (or --version N).
    Test {
        id: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Delete a connection.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum PipelineCmd {
    /// Create a pipeline.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        workspace: String,
        /// Connection IDs, repeatable.
        #[arg(long = "connection")]
        connections: Vec<String>,
    },
    /// List pipelines.
    List {
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Show a pipeline.
    Show { id: String },
    /// Delete a pipeline.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum OrgCmd {
    /// Create an organization (instance admin).
    Create { name: String },
    /// List organizations.
    List,
    /// Show an organization's settings.
    Settings { org: String },
    /// Change settings, e.g. --enabled-types database,api_key --allow-environment-override true.
    Set {
        org: String,
        #[arg(long, value_delimiter = ',')]
        enabled_types: Option<Vec<String>>,
        #[arg(long)]
        allow_environment_override: Option<bool>,
        #[arg(long)]
        recovery_window_days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum WorkspaceCmd {
    /// Create a workspace.
    Create {
        #[arg(long)]
        org: String,
        name: String,
    },
    /// List workspaces.
    List {
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum PrincipalCmd {
    /// Create a user or service account.
    Create {
        #[arg(long)]
        org: String,
        /// user or service_account.
        #[arg(long, default_value = "user")]
        kind: String,
        name: String,
    },
    /// List principals.
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Show a principal and its role bindings.
    Show { id: String },
    /// Bind a role at workspace or organization scope.
    Bind {
        id: String,
        #[arg(long)]
        role: String,
        #[arg(long, conflicts_with = "org")]
        workspace: Option<String>,
        #[arg(long)]
        org: Option<String>,
    },
    /// Remove a role binding.
    Unbind { binding: String },
    /// Set another user's web UI sign-in password (admins; read from the terminal, or from
    /// stdin with --password-stdin). Ends the user's browser sessions. People change their
    /// own on the UI's account page, giving the current one.
    SetPassword {
        id: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Offboard: revoke tokens, disable, list owned credentials (--transfer-to SA moves them).
    Offboard {
        id: String,
        #[arg(long)]
        transfer_to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCmd {
    /// Issue a token (printed once).
    Create {
        principal: String,
        #[arg(long)]
        name: Option<String>,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List token metadata.
    List { principal: Option<String> },
    /// Revoke a token.
    Revoke { token_id: String },
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum CredentialCmd {
    /// Create a credential. Non-secret fields with --field k=v; secret fields from
    /// --fields-file (JSON object; `-` for stdin) or a hidden prompt — never from argv.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        variant: Option<String>,
        #[arg(long, conflicts_with = "org")]
        workspace: Option<String>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long = "env")]
        environment: String,
        /// key=value, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Non-secret field key=value (dotted for nested: ssh_tunnel.host=…), repeatable.
        #[arg(long = "field")]
        fields: Vec<String>,
        /// JSON object with (secret) fields; `-` reads stdin.
        #[arg(long)]
        fields_file: Option<PathBuf>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        rotation_period_days: Option<i64>,
        /// Where the secret may be sent: host, *.suffix, IP or CIDR, optional :port (repeatable).
        /// Connections you wire yourself add theirs; others can only use allowed ones.
        #[arg(long = "allow-destination")]
        allow_destinations: Vec<String>,
    },
    /// Show or change where a credential's secret may be sent (its allowed destinations).
    Destinations {
        id: String,
        /// Add an entry (host, *.suffix, IP or CIDR, optional :port), repeatable.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Remove an entry exactly as listed, repeatable.
        #[arg(long = "remove")]
        remove: Vec<String>,
    },
    /// List credentials.
    List {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long = "type")]
        ty: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        /// key:value, repeatable.
        #[arg(long)]
        label: Vec<String>,
        #[arg(long)]
        all: bool,
    },
    /// Show a credential's metadata.
    Show { id: String },
    /// Add a new version (stage it, or --replace in place; --promote stages then promotes).
    Rotate {
        id: String,
        #[arg(long = "field")]
        fields: Vec<String>,
        #[arg(long)]
        fields_file: Option<PathBuf>,
        /// Make it current at once and revoke the old version.
        #[arg(long, conflicts_with = "promote")]
        replace: bool,
        /// Stage, then promote (the old version becomes previous).
        #[arg(long)]
        promote: bool,
    },
    /// Disable a credential (stops every resolve).
    Disable { id: String },
    /// Enable a disabled credential.
    Enable { id: String },
    /// Soft-delete a credential.
    Delete { id: String },
    /// Restore a soft-deleted credential.
    Restore { id: String },
    /// Destroy every version's keys now (admins; needs --reason).
    Purge {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Revoke an OAuth credential's grant: the refresh token at the provider, the tokens from
    /// the credential; it needs a new consent (offboarding, incidents; needs --reason).
    RevokeGrant {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Stage, test every dependent connection, promote only if all pass.
    RotateTested {
        id: String,
        #[arg(long)]
        fields_file: Option<PathBuf>,
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Do not let connections Test connection cannot check (e.g. Snowflake) block the
        /// promotion; they are listed as untested.
        #[arg(long)]
        allow_untestable: bool,
    },
    /// Test every connection that uses the credential (optionally a pending --version N).
    Test {
        id: String,
        #[arg(long)]
        version: Option<i64>,
    },
}
