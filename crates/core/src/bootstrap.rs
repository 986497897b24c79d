//! First start: the `default` organization and workspace, an `admin` user who is instance
//! admin and admin of `default`, and one token for it, all in one transaction so a crash
//! leaves either nothing or everything.

use crate::actions::Action;
use zeroize::Zeroizing;

use credvault_crypto::generate_token;
use credvault_domain::roles::Role;
use credvault_domain::time::now_micros;
use credvault_domain::{OrgId, PrincipalId, PrincipalKind, TokenId, WorkspaceId};
use credvault_store::{StoreError, Tx};

use crate::Service;
use crate::audit::{self, ActorRef, Draft};
use crate::context::RequestCtx;
use crate::error::{CoreError, CoreResult};
use crate::tenancy::{insert_binding, insert_org, insert_principal, insert_token};

/// What `init` prints once. Holds the admin token: redacted in `Debug`, zeroized on drop.
pub struct BootstrapOutput {
    /// The one-time admin token.
    pub admin_token: Zeroizing<String>,
    /// The `default` organization.
    pub org_id: String,
    /// The `default` workspace.
    pub workspace_id: String,
    /// The admin user.
    pub admin_id: String,
    /// The admin's one-time web UI password (sign-in name `admin`).
    pub admin_password: Zeroizing<String>,
}

impl std::fmt::Debug for BootstrapOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapOutput")
            .field("org_id", &self.org_id)
            .field("admin_token", &"[redacted]")
            .finish()
    }
}

impl Service {
    /// Whether the store has been initialized.
    pub async fn is_initialized(&self) -> CoreResult<bool> {
        self.inner
            .store
            .read(|tx: &mut dyn Tx| -> CoreResult<bool> {
                Ok(tx
                    .query_opt("SELECT value FROM meta WHERE key = 'initialized_at'", &[])?
                    .is_some())
            })
            .await
    }

    /// Initializes an empty store. Returns `None` if it was already initialized (by this or
    /// another node).
    pub async fn bootstrap(&self) -> CoreResult<Option<BootstrapOutput>> {
        if self.is_initialized().await? {
            return Ok(None);
        }
        // The admin's first UI password: 96 random bits, shown once like the token.
        let password = Zeroizing::new(
            credvault_crypto::random_bytes::<12>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        let pw = password.clone();
        let phc = tokio::task::spawn_blocking(move || credvault_crypto::hash_password(pw.as_bytes()))
            .await
            .map_err(|_| CoreError::Internal("password hashing stopped".into()))?
            .map_err(|_| CoreError::Internal("password hashing failed".into()))?;
        let r = self
            .inner
            .store
            .write(move |tx: &mut dyn Tx| -> CoreResult<Option<BootstrapOutput>> {
                if tx.query_opt("SELECT value FROM meta WHERE key = 'initialized_at'", &[])?.is_some() {
                    return Ok(None);
                }
                let now = now_micros();
                tx.execute("INSERT INTO meta (key, value) VALUES ('initialized_at', $1)", &[now.to_string().into()])?;
                audit::create_chain(tx, audit::INSTANCE_CHAIN)?;
                let org = OrgId::generate();
                insert_org(tx, &org, "default", None)?;
                let ws = WorkspaceId::generate();
                tx.execute(
                    "INSERT INTO workspaces (id, org_id, name, created_at, created_by) VALUES ($1, $2, 'default', $3, NULL)",
                    &[ws.as_str().into(), org.as_str().into(), now.into()],
                )?;
                let admin = PrincipalId::generate(PrincipalKind::User);
                insert_principal(tx, &admin, &org, "admin", true, now)?;
                insert_binding(tx, &org, &admin, Role::Admin, now)?;
                tx.execute(
                    "INSERT INTO principal_passwords (principal_id, login, phc, failed, locked_until, updated_at) \
                     VALUES ($1, 'admin', $2, 0, NULL, $3)",
                    &[admin.as_str().into(), phc.into(), now.into()],
                )?;
                let (token, hash) = generate_token();
                let tok = TokenId::generate();
                insert_token(tx, &tok, &org, admin.as_str(), &hash, Some("bootstrap"), None, None, now)?;
                let ctx = RequestCtx { request_id: String::new(), source_ip: None, user_agent: Some("credvault init".into()), received_at: 0 };
                audit::append(
                    tx,
                    &ctx,
                    &ActorRef::system(),
                    &Draft::new(Action::InstanceInit, "org", org.as_str(), org.as_str()).details(serde_json::json!({
                        "workspace_id": ws.as_str(), "admin_id": admin.as_str(), "token_id": tok.as_str()
                    })),
                )?;
                Ok(Some(BootstrapOutput {
                    admin_token: token,
                    org_id: org.to_string(),
                    workspace_id: ws.to_string(),
                    admin_id: admin.to_string(),
                    admin_password: password,
                }))
            })
            .await;
        match r {
            // Another node initialized first.
            Err(CoreError::Store(StoreError::Unique(_))) => Ok(None),
            other => other,
        }
    }
}
