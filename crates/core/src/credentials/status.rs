//! Status changes (disable, enable, soft delete, restore) and reveal.

use super::*;

impl Service {
    /// Sets the status: `disable`, `enable`, `delete` (soft) or `restore`.
    pub async fn set_status(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        op: StatusOp,
    ) -> CoreResult<CredentialView> {
        let (action, perm) = match op {
            StatusOp::Disable => (Action::CredentialDisable, Permission::CredentialCreate),
            StatusOp::Enable => (Action::CredentialEnable, Permission::CredentialCreate),
            StatusOp::Delete => (Action::CredentialDelete, Permission::CredentialDelete),
            StatusOp::Restore => (Action::CredentialRestore, Permission::CredentialDelete),
        };
        let prepare = credential_plan(id, true, Access::Write, perm, action);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            if c.status == CredentialStatus::Purged {
                return Err(CoreError::conflict(
                    Code::CredentialPurged,
                    "the credential was purged; its keys are destroyed and it cannot change",
                ));
            }
            let now = now_micros();
            use CredentialStatus::{Active, Disabled, PendingDeletion};
            let (new_status, deleted_at): (CredentialStatus, Option<i64>) = match (op, c.status) {
                (StatusOp::Disable | StatusOp::Enable, PendingDeletion) => {
                    return Err(CoreError::conflict(
                        Code::CredentialDeleted,
                        "the credential is pending deletion; restore it first",
                    ));
                }
                (StatusOp::Disable, _) => (Disabled, None),
                (StatusOp::Enable, _) => (Active, None),
                (StatusOp::Delete, PendingDeletion) => (PendingDeletion, c.deleted_at),
                (StatusOp::Delete, _) if crate::connections::attached_count(ops.tx(), &c.id)? > 0 => {
                    return Err(CoreError::conflict(
                        Code::CredentialInUse,
                        "the credential is attached to connections; detach it first (see its usage, or detach-all)",
                    ));
                }
                (StatusOp::Delete, _) if !crate::testing::chain_users(ops.tx(), &c.id)?.is_empty() => {
                    return Err(CoreError::conflict(
                        Code::CredentialInUse,
                        "the credential is the source of AWS role chains; change or delete those credentials first (see its usage)",
                    ));
                }
                (StatusOp::Delete, _) => (PendingDeletion, Some(now)),
                (StatusOp::Restore, PendingDeletion) => (Active, None),
                (StatusOp::Restore, _) => {
                    return Err(CoreError::conflict(
                        Code::NotDeleted,
                        "the credential is not pending deletion",
                    ));
                }
            };
            if new_status != c.status {
                ops.tx().execute(
                    "UPDATE credentials SET status = $1, deleted_at = $2, updated_at = $3 WHERE id = $4",
                    &[new_status.as_str().into(), deleted_at.into(), now.into(), c.id.as_str().into()],
                )?;
                let mut details = serde_json::json!({ "from": c.status, "to": new_status });
                if op == StatusOp::Delete {
                    details["recovery_window_days"] = ops.settings().recovery_window_days.into();
                }
                ops.record(c.draft(action).details(details))?;
            }
            let c = load_cred(ops.tx(), &c.id, false)?;
            full_view(ops.tx(), &c)
        })
        .await
    }

    /// Returns the plaintext fields of the current version to a principal holding
    /// `credential.reveal` (nobody by default). Audited before the plaintext leaves.
    pub async fn reveal_credential(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<Revealed> {
        self.inner.config.audit_gate.check()?;
        let keyring = self.keyring_arc()?;
        // The scope of create/rotate, not of reading: once an organization gives
        // credential.reveal to a role, a binding in one workspace must not reveal the
        // organization-wide credentials every workspace can read.
        let prepare = credential_plan(
            id,
            false,
            Access::Write,
            Permission::CredentialReveal,
            Action::CredentialReveal,
        );
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            if c.status != CredentialStatus::Active {
                return Err(CoreError::conflict(
                    Code::CredentialNotActive,
                    format!("the credential is {}", c.status),
                ));
            }
            let fields = decrypt_version(ops.tx(), &keyring, &c.org_id, &c.id, c.current_version)?;
            ops.record(
                c.draft(Action::CredentialReveal)
                    .details(serde_json::json!({ "version": c.current_version })),
            )?;
            Ok(Revealed {
                id: c.id.clone(),
                version: c.current_version,
                fields,
            })
        })
        .await
    }
}

/// Status changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOp {
    /// Stop every resolve.
    Disable,
    /// Undo disable.
    Enable,
    /// Soft delete into `pending_deletion`.
    Delete,
    /// Undo a soft delete.
    Restore,
}
