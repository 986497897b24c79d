//! Command-line arguments and their dispatch.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use credvault_domain::credential_types::{self, CredentialType, FieldKind, FieldSchema};

use crate::client::{Client, print};
use crate::config::{ClientSettings, FileConfig, RawServer, ServerSettings};

/// credvault: a credential store for data pipelines.
#[derive(Debug, Parser)]
#[command(name = "credvault", version, about)]
pub struct Cli {
    /// TOML config file (server and client settings).
    #[arg(long, global = true, env = "CREDVAULT_CONFIG")]
    config: Option<PathBuf>,
    /// Server URL for client commands.
    #[arg(long, global = true, env = "CREDVAULT_SERVER")]
    server: Option<String>,
    /// File holding the API token for client commands (or set CREDVAULT_TOKEN).
    #[arg(long, global = true, env = "CREDVAULT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Data directory (key file; SQLite database unless --database-url is given).
    #[arg(long, env = "CREDVAULT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB.
    #[arg(long, env = "CREDVAULT_DATABASE_URL")]
    database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "CREDVAULT_LOG_FORMAT")]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Initialize a data directory and print the admin token.
    Init {
        #[command(flatten)]
        server: ServerArgs,
        /// Print {"admin_token", "org_id", "workspace_id"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the server (initializes an empty data directory first).
    Serve {
        #[command(flatten)]
        server: ServerArgs,
        /// Listen address.
        #[arg(long, env = "CREDVAULT_LISTEN")]
        listen: Option<String>,
        /// Largest accepted request body, in bytes.
        #[arg(long, env = "CREDVAULT_BODY_LIMIT")]
        body_limit: Option<usize>,
        /// Non-public networks Test connection may reach, e.g. 10.0.0.0/8 (comma-separated).
        #[arg(long, env = "CREDVAULT_EGRESS_ALLOW", value_delimiter = ',')]
        egress_allow: Option<Vec<String>>,
    },
    /// Show the calling principal.
    Whoami,
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCmd),
    /// Workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCmd),
    /// Users and service accounts, and their role bindings.
    #[command(subcommand)]
    Principal(PrincipalCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Credentials.
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// Connections.
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// Pipelines.
    #[command(subcommand)]
    Pipeline(PipelineCmd),
    /// Review reports: attachments, unused, rotation-due, overrides, unreviewed.
    Review {
        /// attachments | unused | rotation-due | overrides | unreviewed
        report: String,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
        /// Write to this file instead of stdout (shows progress).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The report's N (days).
        #[arg(long)]
        days: Option<i64>,
        /// Only this workspace.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// The audit journal: tail, export, verify.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Incident response: disable a credential, detach it everywhere, print what breaks.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Master keys: status, rotate (re-wraps every data key), rewrap (resume), retire.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Write a consistent backup of the store (secrets stay encrypted; works while serving).
    Backup {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        output: PathBuf,
        /// Also include the key file, encrypted with the passphrase in this file (`-`: stdin).
        #[arg(long = "include-keyring", value_name = "PASSPHRASE_FILE")]
        include_keyring: Option<PathBuf>,
    },
    /// Restore a backup into an empty data directory (and database).
    Restore {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        input: PathBuf,
        /// Passphrase file (`-`: stdin) to decrypt the key file included in the backup.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// The lifecycle scheduler (normally runs inside `serve`).
    #[command(subcommand)]
    Scheduler(SchedulerCmd),
    /// Resolve a connection for a run (worker scripts); prints JSON with the plaintext fields.
    Resolve {
        connection: String,
        #[arg(long)]
        run_id: String,
        #[arg(long)]
        pipeline: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
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
enum AuditCmd {
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
enum IncidentCmd {
    /// Disable + detach-all + list the dependent pipelines, in one step.
    Disable { credential: String },
}

#[derive(Debug, Subcommand)]
enum SchedulerCmd {
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
enum ConnectionCmd {
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
enum PipelineCmd {
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
enum OrgCmd {
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
enum WorkspaceCmd {
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
enum PrincipalCmd {
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
enum TokenCmd {
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
enum CredentialCmd {
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

/// Runs one command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = FileConfig::load(cli.config.as_deref())?;
    let server_settings =
        |s: ServerArgs, listen: Option<String>, body_limit: Option<usize>, egress_allow: Option<Vec<String>>| {
            ServerSettings::resolve(
                RawServer {
                    data_dir: s.data_dir,
                    listen,
                    database_url: s.database_url,
                    log_format: s.log_format,
                    body_limit,
                    egress_allow,
                },
                &file,
            )
        };
    let client = || {
        Client::new(ClientSettings::resolve(
            cli.server.clone(),
            cli.token_file.clone(),
            &file,
        )?)
    };
    match cli.command {
        Command::Init { server, json } => {
            let settings = server_settings(server, None, None, None)?;
            let out = crate::server::init_data_dir(&settings).await?;
            if json {
                println!(
                    "{}",
                    json!({"admin_token": out.admin_token.as_str(), "admin_password": out.admin_password.as_str(), "org_id": out.org_id, "workspace_id": out.workspace_id})
                );
            } else {
                println!("initialized {}", settings.data_dir.display());
                println!(
                    "organization default: {}\nworkspace default: {}",
                    out.org_id, out.workspace_id
                );
                println!("admin token (shown once): {}", out.admin_token.as_str());
                println!("UI sign-in: admin / {} (shown once)", out.admin_password.as_str());
            }
        }
        Command::Serve {
            server,
            listen,
            body_limit,
            egress_allow,
        } => {
            let settings = server_settings(server, listen, body_limit, egress_allow)?;
            crate::server::serve(settings).await?;
        }
        Command::Whoami => print(&client()?.call(Method::GET, "/v1/me", &[], None).await?),
        Command::Org(c) => org(client()?, c).await?,
        Command::Workspace(c) => {
            let cl = client()?;
            match c {
                WorkspaceCmd::Create { org, name } => print(
                    &cl.call(
                        Method::POST,
                        "/v1/workspaces",
                        &[],
                        Some(&json!({"org_id": org, "name": name})),
                    )
                    .await?,
                ),
                WorkspaceCmd::List { org } => {
                    let q: Vec<(&str, String)> = org.map(|o| ("org_id", o)).into_iter().collect();
                    print(&cl.call(Method::GET, "/v1/workspaces", &q, None).await?)
                }
            }
        }
        Command::Principal(c) => principal(client()?, c).await?,
        Command::Token(c) => {
            let cl = client()?;
            match c {
                TokenCmd::Create {
                    principal,
                    name,
                    expires_at,
                } => print(
                    &cl.call(
                        Method::POST,
                        "/v1/tokens",
                        &[],
                        Some(&json!({"principal_id": principal, "name": name, "expires_at": expires_at})),
                    )
                    .await?,
                ),
                TokenCmd::List { principal } => {
                    let q: Vec<(&str, String)> = principal.map(|p| ("principal_id", p)).into_iter().collect();
                    print(&cl.call(Method::GET, "/v1/tokens", &q, None).await?)
                }
                TokenCmd::Revoke { token_id } => print(
                    &cl.call(Method::DELETE, &format!("/v1/tokens/{token_id}"), &[], None)
                        .await?,
                ),
            }
        }
        Command::Credential(c) => credential(client()?, c).await?,
        Command::Connection(c) => connection(client()?, c).await?,
        Command::Pipeline(c) => {
            let cl = client()?;
            match c {
                PipelineCmd::Create {
                    name,
                    workspace,
                    connections,
                } => print(
                    &cl.call(
                        Method::POST,
                        "/v1/pipelines",
                        &[],
                        Some(&json!({"name": name, "workspace_id": workspace, "connection_ids": connections})),
                    )
                    .await?,
                ),
                PipelineCmd::List { workspace } => {
                    let q: Vec<(&str, String)> = workspace.map(|w| ("workspace_id", w)).into_iter().collect();
                    print(&cl.call(Method::GET, "/v1/pipelines", &q, None).await?)
                }
                PipelineCmd::Show { id } => {
                    print(&cl.call(Method::GET, &format!("/v1/pipelines/{id}"), &[], None).await?)
                }
                PipelineCmd::Delete { id } => print(
                    &cl.call(Method::DELETE, &format!("/v1/pipelines/{id}"), &[], None)
                        .await?,
                ),
            }
        }
        Command::Review {
            report,
            format,
            output,
            days,
            workspace,
        } => {
            let mut q: Vec<(&str, String)> = vec![("format", format)];
            if let Some(d) = days {
                q.push(("days", d.to_string()));
            }
            if let Some(w) = workspace {
                q.push(("workspace_id", w));
            }
            client()?
                .download(&format!("/v1/reports/{report}"), &q, output.as_deref())
                .await?;
        }
        Command::Audit(cmd) => match cmd {
            AuditCmd::Tail {
                follow,
                action,
                since,
                org,
            } => {
                let cl = client()?;
                let mut after: Option<i64> = None;
                loop {
                    let mut q: Vec<(&str, String)> = vec![("limit", "500".into())];
                    if let Some(a) = &action {
                        q.push(("action", a.clone()));
                    }
                    if let Some(s) = &since {
                        q.push(("since", s.clone()));
                    }
                    if let Some(o) = &org {
                        q.push(("org_id", o.clone()));
                    }
                    if let Some(a) = after {
                        q.push(("after_seq", a.to_string()));
                    }
                    let page = cl.call(Method::GET, "/v1/audit", &q, None).await?;
                    let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                    for e in &items {
                        // A reader that went away (`| head`) ends the tail quietly.
                        if !crate::client::print_line(&e.to_string()) {
                            return Ok(ExitCode::SUCCESS);
                        }
                        after = e.get("seq").and_then(Value::as_i64).or(after);
                    }
                    if items.len() == 500 {
                        continue;
                    }
                    if !follow {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
            AuditCmd::Export {
                format,
                since,
                org,
                output,
            } => {
                export_audit(&client()?, &format, since, org, output.as_deref()).await?;
            }
            AuditCmd::Checkpoint { server } => {
                let settings = server_settings(server, None, None, None)?;
                let n = crate::server::write_checkpoints(&settings).await?;
                print(&json!({"checkpoints_written": n}));
            }
            AuditCmd::PublicKeys { server } => {
                let settings = server_settings(server, None, None, None)?;
                let keys = crate::server::checkpoint_public_keys(&settings).await?;
                let v: Vec<Value> = keys
                    .into_iter()
                    .map(|(id, pk)| json!({"key_id": id, "public_key": pk}))
                    .collect();
                print(&json!(v));
            }
            AuditCmd::Verify {
                org,
                file,
                offline,
                public_keys,
                server,
            } => {
                if let Some(f) = file {
                    let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                    let events = text
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| serde_json::from_str(l).map_err(|_| l.chars().take(80).collect::<String>()));
                    let v = credvault_core::audit::verify_exported(events, false, &public_keys);
                    print(&serde_json::to_value(&v)?);
                    if !v.ok {
                        bail!("the exported journal does not verify");
                    }
                    if !public_keys.is_empty() && v.checkpoints == 0 {
                        bail!("the exported journal holds no signed checkpoint");
                    }
                } else if offline {
                    let settings = server_settings(server, None, None, None)?;
                    let results = crate::server::verify_offline(&settings).await?;
                    let ok = results.iter().all(|(_, v)| v.ok);
                    print(&serde_json::to_value(&results)?);
                    if !ok {
                        bail!("a chain does not verify");
                    }
                } else {
                    let q: Vec<(&str, String)> = org.map(|o| ("org_id", o)).into_iter().collect();
                    let v = client()?.call(Method::GET, "/v1/audit/verify", &q, None).await?;
                    print(&v);
                    if v.get("ok") != Some(&Value::Bool(true)) {
                        bail!("the journal does not verify");
                    }
                }
            }
        },
        Command::Incident(IncidentCmd::Disable { credential }) => {
            let cl = client()?;
            let disabled = cl
                .call(
                    Method::POST,
                    &format!("/v1/credentials/{credential}/disable"),
                    &[],
                    None,
                )
                .await?;
            eprintln!(
                "disabled {credential} ({}): no resolve succeeds from now on",
                disabled.get("name").and_then(Value::as_str).unwrap_or("")
            );
            let d = cl
                .call(
                    Method::POST,
                    &format!("/v1/credentials/{credential}/detach-all"),
                    &[],
                    None,
                )
                .await?;
            let none = Vec::new();
            let detached = d.get("detached").and_then(Value::as_array).unwrap_or(&none);
            let pipelines = d.get("affected_pipelines").and_then(Value::as_array).unwrap_or(&none);
            eprintln!(
                "detached from {} connection(s); {} pipeline(s) now lack this credential:",
                detached.len(),
                pipelines.len()
            );
            for p in pipelines {
                println!(
                    "{}\t{}\t{}",
                    p.get("id").and_then(Value::as_str).unwrap_or(""),
                    p.get("name").and_then(Value::as_str).unwrap_or(""),
                    p.get("workspace_id").and_then(Value::as_str).unwrap_or("")
                );
            }
            eprintln!(
                "next: revoke the secret at the vendor, rotate (credvault credential rotate), re-attach, enable."
            );
        }
        Command::Backup {
            server,
            output,
            include_keyring,
        } => {
            let settings = server_settings(server, None, None, None)?;
            crate::server::backup(&settings, &output, include_keyring.as_deref()).await?;
        }
        Command::Restore {
            server,
            input,
            passphrase_file,
        } => {
            let settings = server_settings(server, None, None, None)?;
            crate::server::restore(&settings, &input, passphrase_file.as_deref()).await?;
        }
        Command::Keys(op) => {
            let (server, op) = match op {
                KeysCmd::Status { server } => (server, crate::server::KeysOp::Status),
                KeysCmd::Rotate { server, wait_secs } => (server, crate::server::KeysOp::Rotate { wait_secs }),
                KeysCmd::Rewrap { server } => (server, crate::server::KeysOp::Rewrap),
                KeysCmd::KmsWrap {
                    server,
                    kms_key_id,
                    kms_region,
                    kms_endpoint,
                } => (
                    server,
                    crate::server::KeysOp::KmsWrap {
                        key: credvault_connect::aws::KmsKey {
                            key_id: kms_key_id,
                            region: kms_region,
                            endpoint: kms_endpoint,
                        },
                    },
                ),
                KeysCmd::KmsUnwrap { server } => (server, crate::server::KeysOp::KmsUnwrap),
                KeysCmd::Retire { server, id } => (server, crate::server::KeysOp::Retire { id }),
            };
            let settings = server_settings(server, None, None, None)?;
            crate::server::keys(&settings, op).await?;
        }
        Command::Scheduler(SchedulerCmd::Tick { server, now }) => {
            let settings = server_settings(server, None, None, None)?;
            let now = match now {
                Some(n) => {
                    credvault_domain::time::parse_rfc3339(&n).with_context(|| format!("--now `{n}` is not RFC 3339"))?
                }
                None => credvault_domain::time::now_micros(),
            };
            let r = crate::server::scheduler_tick(&settings, now).await?;
            print(&serde_json::to_value(&r)?);
        }
        Command::Resolve {
            connection,
            run_id,
            pipeline,
        } => {
            let body = json!({"connection_id": connection, "run_id": run_id, "pipeline_id": pipeline});
            let mut v = client()?.call(Method::POST, "/v1/resolve", &[], Some(&body)).await?;
            println!("{v}");
            credvault_domain::secret::zeroize_json(&mut v);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn export_audit(
    cl: &Client,
    format: &str,
    since: Option<String>,
    org: Option<String>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    const COLS: [&str; 15] = [
        "seq",
        "at",
        "org_id",
        "workspace_id",
        "actor_id",
        "actor_kind",
        "action",
        "target_type",
        "target_id",
        "outcome",
        "source_ip",
        "user_agent",
        "request_id",
        "details",
        "hash",
    ];
    if format != "jsonl" && format != "csv" {
        bail!("--format must be jsonl or csv");
    }
    let mut sink: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    if format == "csv" {
        writeln!(sink, "{}", COLS.join(","))?;
    }
    let mut after: Option<i64> = None;
    let mut n = 0u64;
    loop {
        let mut q: Vec<(&str, String)> = vec![("limit", "500".into())];
        if let Some(s) = &since {
            q.push(("since", s.clone()));
        }
        if let Some(o) = &org {
            q.push(("org_id", o.clone()));
        }
        if let Some(a) = after {
            q.push(("after_seq", a.to_string()));
        }
        let page = cl.call(Method::GET, "/v1/audit", &q, None).await?;
        let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        for e in &items {
            if format == "jsonl" {
                writeln!(sink, "{e}")?;
            } else {
                let cells: Vec<String> = COLS
                    .iter()
                    .map(|c| {
                        let v = match e.get(*c) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        };
                        let v = if v.starts_with(['=', '+', '-', '@']) {
                            format!("'{v}")
                        } else {
                            v
                        };
                        if v.contains([',', '"', '\n', '\r']) {
                            format!("\"{}\"", v.replace('"', "\"\""))
                        } else {
                            v
                        }
                    })
                    .collect();
                write!(sink, "{}\r\n", cells.join(","))?;
            }
            after = e.get("seq").and_then(Value::as_i64).or(after);
            n += 1;
        }
        if output.is_some() {
            crate::progress(format_args!("exported {n} events"));
        }
        if items.len() < 500 {
            break;
        }
    }
    sink.flush()?;
    if output.is_some() {
        crate::progress_done(format_args!("exported {n} events"));
    }
    Ok(())
}

async fn connection(cl: Client, c: ConnectionCmd) -> anyhow::Result<()> {
    match c {
        ConnectionCmd::Create {
            name,
            workspace,
            environment,
            kind,
            set,
            config_file,
            credential,
            override_reason,
        } => {
            let mut cfg = Map::new();
            if let Some(f) = config_file {
                let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                let Value::Object(m) =
                    serde_json::from_str(&text).context("the config file must hold a JSON object")?
                else {
                    bail!("the config file must hold a JSON object");
                };
                cfg = m;
            }
            for kv in set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set `{kv}` is not key=value"))?;
                let value = if let Ok(n) = v.parse::<i64>() {
                    json!(n)
                } else if v == "true" || v == "false" {
                    json!(v == "true")
                } else {
                    json!(v)
                };
                cfg.insert(k.to_owned(), value);
            }
            let body = json!({"name": name, "workspace_id": workspace, "environment": environment, "kind": kind, "config": cfg,
                              "credential_id": credential, "override_reason": override_reason});
            print(&cl.call(Method::POST, "/v1/connections", &[], Some(&body)).await?)
        }
        ConnectionCmd::List { workspace, credential } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(w) = workspace {
                q.push(("workspace_id", w));
            }
            if let Some(c) = credential {
                q.push(("credential_id", c));
            }
            print(&cl.call(Method::GET, "/v1/connections", &q, None).await?)
        }
        ConnectionCmd::Show { id } => print(
            &cl.call(Method::GET, &format!("/v1/connections/{id}"), &[], None)
                .await?,
        ),
        ConnectionCmd::Attach {
            id,
            credential,
            override_reason,
        } => print(
            &cl.call(
                Method::PUT,
                &format!("/v1/connections/{id}/credential"),
                &[],
                Some(&json!({"credential_id": credential, "override_reason": override_reason})),
            )
            .await?,
        ),
        ConnectionCmd::Detach { id } => print(
            &cl.call(Method::DELETE, &format!("/v1/connections/{id}/credential"), &[], None)
                .await?,
        ),
        ConnectionCmd::Test { id, version } => {
            let r = cl
                .call(
                    Method::POST,
                    &format!("/v1/connections/{id}/test"),
                    &[],
                    Some(&json!({"version": version})),
                )
                .await?;
            print(&r);
            if r.get("ok") != Some(&Value::Bool(true)) {
                bail!("the test failed");
            }
        }
        ConnectionCmd::Delete { id } => print(
            &cl.call(Method::DELETE, &format!("/v1/connections/{id}"), &[], None)
                .await?,
        ),
    }
    Ok(())
}

async fn org(cl: Client, c: OrgCmd) -> anyhow::Result<()> {
    match c {
        OrgCmd::Create { name } => print(
            &cl.call(Method::POST, "/v1/orgs", &[], Some(&json!({"name": name})))
                .await?,
        ),
        OrgCmd::List => print(&cl.call(Method::GET, "/v1/orgs", &[], None).await?),
        OrgCmd::Settings { org } => print(
            &cl.call(Method::GET, &format!("/v1/orgs/{org}/settings"), &[], None)
                .await?,
        ),
        OrgCmd::Set {
            org,
            enabled_types,
            allow_environment_override,
            recovery_window_days,
        } => {
            let mut patch = Map::new();
            if let Some(t) = enabled_types {
                patch.insert("enabled_types".into(), json!(t));
            }
            if let Some(b) = allow_environment_override {
                patch.insert("allow_environment_override".into(), json!(b));
            }
            if let Some(d) = recovery_window_days {
                patch.insert("recovery_window_days".into(), json!(d));
            }
            print(
                &cl.call(
                    Method::PATCH,
                    &format!("/v1/orgs/{org}/settings"),
                    &[],
                    Some(&Value::Object(patch)),
                )
                .await?,
            )
        }
    }
    Ok(())
}

async fn principal(cl: Client, c: PrincipalCmd) -> anyhow::Result<()> {
    match c {
        PrincipalCmd::Create { org, kind, name } => print(
            &cl.call(
                Method::POST,
                "/v1/principals",
                &[],
                Some(&json!({"org_id": org, "kind": kind, "name": name})),
            )
            .await?,
        ),
        PrincipalCmd::List { org } => {
            let q: Vec<(&str, String)> = org.map(|o| ("org_id", o)).into_iter().collect();
            print(&cl.call(Method::GET, "/v1/principals", &q, None).await?)
        }
        PrincipalCmd::Show { id } => print(&cl.call(Method::GET, &format!("/v1/principals/{id}"), &[], None).await?),
        PrincipalCmd::Bind {
            id,
            role,
            workspace,
            org,
        } => {
            if workspace.is_none() && org.is_none() {
                bail!("give --workspace WS or --org ORG");
            }
            let body = json!({"principal_id": id, "role": role, "workspace_id": workspace, "org_id": org});
            print(&cl.call(Method::POST, "/v1/role-bindings", &[], Some(&body)).await?)
        }
        PrincipalCmd::Offboard { id, transfer_to } => print(
            &cl.call(
                Method::POST,
                &format!("/v1/principals/{id}/offboard"),
                &[],
                Some(&json!({"transfer_to": transfer_to})),
            )
            .await?,
        ),
        PrincipalCmd::SetPassword { id, password_stdin } => {
            let pw = read_password(password_stdin)?;
            cl.call(
                Method::PUT,
                &format!("/v1/principals/{id}/password"),
                &[],
                Some(&json!({"password": pw.as_str()})),
            )
            .await?;
            eprintln!("password set for {id}; the user's browser sessions have ended");
        }
        PrincipalCmd::Unbind { binding } => print(
            &cl.call(Method::DELETE, &format!("/v1/role-bindings/{binding}"), &[], None)
                .await?,
        ),
    }
    Ok(())
}

async fn credential(cl: Client, c: CredentialCmd) -> anyhow::Result<()> {
    match c {
        CredentialCmd::Create {
            name,
            ty,
            variant,
            workspace,
            org,
            environment,
            labels,
            fields,
            fields_file,
            description,
            expires_at,
            rotation_period_days,
            allow_destinations,
        } => {
            if workspace.is_none() && org.is_none() {
                bail!("give --workspace WS (or --org ORG for an organization-wide credential)");
            }
            let t = CredentialType::parse(&ty).with_context(|| format!("unknown type `{ty}`"))?;
            let field_values = collect_fields(t, variant.as_deref(), &fields, fields_file.as_deref())?;
            let mut label_map = Map::new();
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .with_context(|| format!("label `{l}` is not key=value"))?;
                label_map.insert(k.to_owned(), json!(v));
            }
            let mut body = json!({
                "name": name, "type": ty, "variant": variant, "environment": environment, "labels": label_map,
                "description": description, "expires_at": expires_at, "rotation_period_days": rotation_period_days,
                "allowed_destinations": allow_destinations, "fields": field_values,
            });
            if let Some(w) = workspace {
                body["workspace_id"] = json!(w);
            } else {
                body["org_id"] = json!(org);
            }
            let r = cl.call(Method::POST, "/v1/credentials", &[], Some(&body)).await;
            credvault_domain::secret::zeroize_json(&mut body);
            print(&r?);
        }
        CredentialCmd::List {
            workspace,
            ty,
            environment,
            label,
            all,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(w) = workspace {
                q.push(("workspace_id", w));
            }
            if let Some(t) = ty {
                q.push(("type", t));
            }
            if let Some(e) = environment {
                q.push(("environment", e));
            }
            for l in label {
                q.push(("label", l));
            }
            let mut items = Vec::new();
            loop {
                let page = cl.call(Method::GET, "/v1/credentials", &q, None).await?;
                if let Some(a) = page.get("items").and_then(Value::as_array) {
                    items.extend(a.iter().cloned());
                }
                match page.get("next_cursor").and_then(Value::as_str) {
                    Some(c) if all => {
                        q.retain(|(k, _)| *k != "cursor");
                        q.push(("cursor", c.to_owned()));
                    }
                    _ => break,
                }
            }
            println!(
                "{:<32} {:<28} {:<9} {:<8} {:<17} {:>7}",
                "ID", "NAME", "TYPE", "ENV", "STATUS", "VERSION"
            );
            for i in &items {
                let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                println!(
                    "{:<32} {:<28} {:<9} {:<8} {:<17} {:>7}",
                    s("id"),
                    s("name"),
                    s("type"),
                    s("environment"),
                    s("status"),
                    i.get("current_version").and_then(Value::as_i64).unwrap_or(0)
                );
            }
        }
        CredentialCmd::Show { id } => print(
            &cl.call(Method::GET, &format!("/v1/credentials/{id}"), &[], None)
                .await?,
        ),
        CredentialCmd::Rotate {
            id,
            fields,
            fields_file,
            replace,
            promote,
        } => {
            let cred = cl
                .call(Method::GET, &format!("/v1/credentials/{id}"), &[], None)
                .await?;
            let ty = cred
                .get("type")
                .and_then(Value::as_str)
                .and_then(CredentialType::parse)
                .context("unexpected credential type")?;
            let variant = cred.get("variant").and_then(Value::as_str).map(str::to_owned);
            let mut new_fields = collect_fields(ty, variant.as_deref(), &fields, fields_file.as_deref())?;
            carry_public_fields(ty, variant.as_deref(), &cred, &mut new_fields)?;
            let mut body = json!({
                "fields": new_fields,
                "mode": if replace { "replace" } else { "stage" },
            });
            let r = cl
                .call(
                    Method::POST,
                    &format!("/v1/credentials/{id}/versions"),
                    &[],
                    Some(&body),
                )
                .await;
            credvault_domain::secret::zeroize_json(&mut body);
            let created = r?;
            if promote {
                let n = created
                    .get("version")
                    .and_then(Value::as_i64)
                    .context("no version in response")?;
                print(
                    &cl.call(
                        Method::POST,
                        &format!("/v1/credentials/{id}/versions/{n}/promote"),
                        &[],
                        None,
                    )
                    .await?,
                );
            } else {
                print(&created);
            }
        }
        CredentialCmd::Disable { id } => print(
            &cl.call(Method::POST, &format!("/v1/credentials/{id}/disable"), &[], None)
                .await?,
        ),
        CredentialCmd::Enable { id } => print(
            &cl.call(Method::POST, &format!("/v1/credentials/{id}/enable"), &[], None)
                .await?,
        ),
        CredentialCmd::Delete { id } => print(
            &cl.call(Method::DELETE, &format!("/v1/credentials/{id}"), &[], None)
                .await?,
        ),
        CredentialCmd::Purge { id, reason } => print(
            &cl.call(
                Method::DELETE,
                &format!("/v1/credentials/{id}"),
                &[("purge", "true".into()), ("reason", reason)],
                None,
            )
            .await?,
        ),
        CredentialCmd::RotateTested {
            id,
            fields_file,
            fields,
            allow_untestable,
        } => {
            let cred = cl
                .call(Method::GET, &format!("/v1/credentials/{id}"), &[], None)
                .await?;
            let ty = cred
                .get("type")
                .and_then(Value::as_str)
                .and_then(CredentialType::parse)
                .context("unexpected credential type")?;
            let variant = cred.get("variant").and_then(Value::as_str).map(str::to_owned);
            let mut new_fields = collect_fields(ty, variant.as_deref(), &fields, fields_file.as_deref())?;
            carry_public_fields(ty, variant.as_deref(), &cred, &mut new_fields)?;
            let mut body = json!({"fields": new_fields});
            // Only when asked: an older server refuses the unknown field.
            if allow_untestable {
                body["allow_untestable"] = Value::Bool(true);
            }
            let r = cl
                .call(Method::POST, &format!("/v1/credentials/{id}/rotate"), &[], Some(&body))
                .await;
            credvault_domain::secret::zeroize_json(&mut body);
            let r = r?;
            print(&r);
            if r.get("promoted") != Some(&Value::Bool(true)) {
                bail!("not promoted: a dependent connection failed its test; the new version stays pending");
            }
        }
        CredentialCmd::Test { id, version } => {
            let r = cl
                .call(
                    Method::POST,
                    &format!("/v1/credentials/{id}/test"),
                    &[],
                    Some(&json!({"version": version})),
                )
                .await?;
            print(&r);
            if r.get("ok") != Some(&Value::Bool(true)) {
                bail!("not every dependent connection passed");
            }
        }
        CredentialCmd::Destinations { id, allow, remove } => {
            let path = format!("/v1/credentials/{id}");
            let current = cl.call(Method::GET, &path, &[], None).await?;
            if allow.is_empty() && remove.is_empty() {
                print(&json!({
                    "allowed_destinations": current["allowed_destinations"],
                    "field_destinations": current["field_destinations"],
                }));
                return Ok(());
            }
            let mut list: Vec<String> = current["allowed_destinations"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            for r in &remove {
                let before = list.len();
                list.retain(|e| e != r);
                if list.len() == before {
                    bail!(
                        "`{r}` is not in the list (entries are removed exactly as `credential destinations {id}` shows them)"
                    );
                }
            }
            list.extend(allow);
            let r = cl
                .call(Method::PATCH, &path, &[], Some(&json!({"allowed_destinations": list})))
                .await?;
            print(&json!({"allowed_destinations": r["allowed_destinations"]}));
        }
        CredentialCmd::Restore { id } => print(
            &cl.call(Method::POST, &format!("/v1/credentials/{id}/restore"), &[], None)
                .await?,
        ),
    }
    Ok(())
}

/// A new version repeats the current version's non-secret fields (a user name, URLs) that
/// the new fields do not give, so rotating a password needs only the password. Fields that hold
/// a secret anywhere (an SSH tunnel with its key) are not carried: give them whole.
fn carry_public_fields(
    ty: CredentialType,
    variant: Option<&str>,
    cred: &Value,
    fields: &mut Value,
) -> anyhow::Result<()> {
    fn holds_secret(f: &FieldSchema) -> bool {
        f.secret
            || match f.kind {
                FieldKind::Object(inner) | FieldKind::List(inner) => inner.iter().any(holds_secret),
                _ => false,
            }
    }
    let vs = credential_types::resolve_variant(ty, variant).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (Some(current), Value::Object(new)) = (cred.get("fields").and_then(Value::as_object), fields) else {
        return Ok(());
    };
    for f in vs.fields.iter().filter(|f| !holds_secret(f)) {
        if let Some(v) = current.get(f.name)
            && !new.contains_key(f.name)
        {
            new.insert(f.name.to_owned(), v.clone());
        }
    }
    Ok(())
}

/// Builds the `fields` object: `--field` pairs (refused for secret fields), then the JSON file
/// or stdin, then a hidden prompt for required secret fields still missing.
fn collect_fields(
    ty: CredentialType,
    variant: Option<&str>,
    pairs: &[String],
    file: Option<&std::path::Path>,
) -> anyhow::Result<Value> {
    let vs = credential_types::resolve_variant(ty, variant).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut fields = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--field `{p}` is not key=value"))?;
        let path: Vec<&str> = k.split('.').collect();
        let schema =
            find_field(vs.fields, &path).with_context(|| format!("`{k}` is not a field of this credential type"))?;
        if schema.secret {
            bail!(
                "`{k}` is a secret field: secrets are never read from the command line; use --fields-file FILE (or - for stdin) or the prompt"
            );
        }
        let value = match schema.kind {
            FieldKind::Integer => json!(v.parse::<i64>().with_context(|| format!("`{k}` must be an integer"))?),
            FieldKind::StringList => json!(v.split(',').map(str::trim).collect::<Vec<_>>()),
            _ => json!(v),
        };
        insert_path(&mut fields, &path, value);
    }
    if let Some(f) = file {
        let mut text = String::new();
        if f.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
        } else {
            text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        }
        let parsed: anyhow::Result<Value> = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "the fields file is not a JSON object (line {}, column {})",
                e.line(),
                e.column()
            )
        });
        zeroize::Zeroize::zeroize(&mut text);
        let Value::Object(m) = parsed? else {
            bail!("the fields file must hold a JSON object")
        };
        for (k, v) in m {
            fields.insert(k, v);
        }
    }
    for f in vs
        .fields
        .iter()
        .filter(|f| f.secret && f.required && matches!(f.kind, FieldKind::String))
    {
        if fields.contains_key(f.name) {
            continue;
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "secret field `{}` is missing: give it in --fields-file (stdin is not a terminal, so no prompt)",
                f.name
            );
        }
        let v =
            rpassword::prompt_password(format!("{} (hidden): ", f.name)).context("cannot read from the terminal")?;
        fields.insert(f.name.to_owned(), Value::String(v));
    }
    Ok(Value::Object(fields))
}

fn find_field<'a>(fields: &'a [FieldSchema], path: &[&str]) -> Option<&'a FieldSchema> {
    let (first, rest) = path.split_first()?;
    let f = fields.iter().find(|f| f.name == *first)?;
    if rest.is_empty() {
        return Some(f);
    }
    match &f.kind {
        FieldKind::Object(sub) => find_field(sub, rest),
        _ => None,
    }
}

fn insert_path(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                insert_path(m, rest, value);
            }
        }
    }
}

/// A new sign-in password: the first line of stdin, or typed twice at a hidden prompt.
fn read_password(from_stdin: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if from_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line).context("cannot read stdin")?;
        let pw = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
        if pw.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal: pass --password-stdin and write the password to stdin");
    }
    let a = zeroize::Zeroizing::new(
        rpassword::prompt_password("new password (hidden): ").context("cannot read from the terminal")?,
    );
    let b = zeroize::Zeroizing::new(rpassword::prompt_password("again: ").context("cannot read from the terminal")?);
    if a != b {
        bail!("the two passwords differ");
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
