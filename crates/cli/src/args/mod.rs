//! Command-line arguments and their dispatch.

mod audit_export;
mod connections;
mod credentials;
mod defs;
mod tenancy;

use audit_export::*;
use connections::*;
use credentials::*;
use defs::*;
use tenancy::*;

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
    /// Resolve a connection for a run, then run a command with it in the environment variables
    /// its tools read (PGPASSWORD…, a private my.cnf, AWS_*, GOOGLE_APPLICATION_CREDENTIALS…);
    /// exits with the command's status. Nothing secret goes on a command line.
    Exec {
        /// The connection (conn_…).
        #[arg(long)]
        connection: String,
        /// The run this is part of (recorded in the audit journal).
        #[arg(long)]
        run_id: String,
        /// The pipeline the run belongs to (checked: it must use the connection).
        #[arg(long)]
        pipeline: Option<String>,
        /// Report the outcome through /v1/resolve/report when the command ends: `ok` for
        /// status 0, `auth_failed` for a status given with --auth-failed-status, else `error`.
        #[arg(long)]
        report_on_exit: bool,
        /// Exit statuses of the command that mean the target refused the credential.
        #[arg(long, value_delimiter = ',')]
        auth_failed_status: Vec<i32>,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, num_args = 1..)]
        command: Vec<std::ffi::OsString>,
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
        Command::Exec {
            connection,
            run_id,
            pipeline,
            report_on_exit,
            auth_failed_status,
            command,
        } => {
            let cl = client()?;
            let body = json!({"connection_id": connection, "run_id": run_id, "pipeline_id": pipeline});
            let mut v = cl.call(Method::POST, "/v1/resolve", &[], Some(&body)).await?;
            let version = v["credential"]["version"].as_i64();
            let prepared = crate::exec::prepare(&v, &run_id);
            credvault_domain::secret::zeroize_json(&mut v);
            let (code, exit) = crate::exec::run(prepared?, &command).await?;
            if report_on_exit {
                let outcome = crate::exec::outcome(code, &auth_failed_status);
                let report =
                    json!({"connection_id": connection, "run_id": run_id, "version": version, "outcome": outcome});
                if let Err(e) = cl.call(Method::POST, "/v1/resolve/report", &[], Some(&report)).await {
                    eprintln!("credvault exec: could not report the outcome ({outcome}): {e}");
                }
            }
            return Ok(exit);
        }
    }
    Ok(ExitCode::SUCCESS)
}
