//! The OAuth grants report: which OAuth credentials exist, who authorized each, and how they
//! are; and revoking a grant (offboarding, incidents).

use super::*;

/// Request: revoke a grant.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeGrantRequest {
    /// Why (1–1024 characters, not only whitespace; recorded in the audit event).
    pub reason: String,
}

/// Result of revoking a grant.
#[derive(Clone, Debug, Serialize)]
pub struct GrantRevoked {
    /// The credential.
    pub credential_id: String,
    /// The new current version, without tokens.
    pub version: i64,
    /// At the provider: `revoked`, `failed: …`, or `not_configured` (no revocation_url, or no
    /// refresh token).
    pub provider_revocation: String,
    /// Always `needs_reauthorization`: a new consent makes the credential usable again.
    pub oauth_health: String,
}

/// The fields a grant put into a credential.
const GRANT_FIELDS: [&str; 6] = [
    "access_token",
    "refresh_token",
    "access_token_expires_at",
    "token_extras",
    "authorized_by",
    "authorized_at",
];

impl Service {
    /// Revokes an OAuth credential's grant: the refresh token at the provider (RFC 7009, where
    /// a revocation_url is configured; best effort, the outcome recorded), then a new current
    /// version without the tokens (the old one revoked, so no pinned resolve reaches it), and
    /// the grant marked `needs_reauthorization` until someone consents again. Every check runs
    /// first: a refused request revokes nothing at the provider.
    pub async fn revoke_grant(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: RevokeGrantRequest,
    ) -> CoreResult<GrantRevoked> {
        if req.reason.chars().count() > 1024 {
            return Err(CoreError::invalid(
                "reason",
                Code::TooLong,
                "must be at most 1024 characters",
            ));
        }
        let reason = req.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(CoreError::invalid(
                "reason",
                Code::ReasonRequired,
                "revoking a grant needs a written reason",
            ));
        }
        let plan = |lock| {
            credential_plan(
                id,
                lock,
                Access::Write,
                Permission::CredentialCreate,
                Action::OauthGrantRevoke,
            )
        };
        let usable = |c: &CredRow| {
            if c.ty != "oauth" {
                return Err(CoreError::conflict(
                    Code::NotAnAuthorizationCodeCredential,
                    "only oauth credentials have a grant",
                ));
            }
            if matches!(c.status, CredentialStatus::Purged) {
                return Err(CoreError::conflict(
                    Code::CredentialNotActive,
                    format!("the credential is {}", c.status),
                ));
            }
            Ok(())
        };
        self.operate(ctx, actor, Mode::Read, plan(false), move |_, c| usable(&c))
            .await?;
        let provider_revocation = self
            .revoke_oauth_at_provider(id)
            .await
            .unwrap_or_else(|| "not_configured".to_owned());
        let keyring = self.keyring()?.clone();
        self.operate(ctx, actor, Mode::Write, plan(true), move |ops, c| {
            usable(&c)?;
            let mut fields = decrypt_version(ops.tx(), &keyring, &c.org_id, &c.id, c.current_version)?;
            if let Json::Object(m) = &mut fields {
                for k in GRANT_FIELDS {
                    if let Some(mut v) = m.remove(k) {
                        credvault_domain::secret::zeroize_json(&mut v);
                    }
                }
            }
            let by = ops.actor().principal_id.to_string();
            let version = replace_version_internal(ops.tx(), &keyring, &c, fields, &by)?;
            set_health(
                ops.tx(),
                &c.id,
                "needs_reauthorization",
                Some(&format!("grant revoked: {reason}")),
            )?;
            // Nobody's grant any more (the audit trail keeps who had authorized it).
            ops.tx().execute(
                "UPDATE credentials SET oauth_authorized_by = NULL WHERE id = $1",
                &[c.id.as_str().into()],
            )?;
            ops.record(ops.event().details(json!({
                "reason": reason, "provider_revocation": provider_revocation, "version": version,
            })))?;
            Ok(GrantRevoked {
                credential_id: c.id.clone(),
                version,
                provider_revocation,
                oauth_health: "needs_reauthorization".into(),
            })
        })
        .await
    }

    /// OAuth grants visible to the caller (metadata readers), filtered.
    pub async fn list_grants(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        f: GrantFilter,
    ) -> CoreResult<Page<GrantView>> {
        let org = f.org_id.clone().unwrap_or_else(|| actor.org_id.to_string());
        let what = (Action::CredentialRead, Permission::MetadataRead);
        self.operate_list(ctx, actor, Mode::Read, &org.clone(), None, what, move |ops, visible| {
            let (a, settings) = (ops.actor().clone(), ops.settings().clone());
            let tx = ops.tx();
            let mut sql = String::from(
                "SELECT c.id, c.name, c.org_id, c.workspace_id, c.variant, c.oauth_authorized_by, c.oauth_health, c.oauth_health_reason, c.oauth_refreshed_at, \
                 p.name, p.disabled \
                 FROM credentials c LEFT JOIN principals p ON p.id = c.oauth_authorized_by \
                 WHERE c.org_id = $1 AND c.type = 'oauth' AND c.status <> 'purged'",
            );
            let mut params: Vec<credvault_store::Value> = vec![org.as_str().into()];
            if let Some(v) = &visible {
                sql.push_str(" AND (c.workspace_id IS NULL");
                if !v.is_empty() {
                    let marks: Vec<String> = v
                        .iter()
                        .map(|w| {
                            params.push(w.as_str().into());
                            format!("${}", params.len())
                        })
                        .collect();
                    sql.push_str(&format!(" OR c.workspace_id IN ({})", marks.join(", ")));
                }
                sql.push(')');
            }
            if let Some(p) = &f.authorized_by {
                params.push(p.as_str().into());
                sql.push_str(&format!(" AND c.oauth_authorized_by = ${}", params.len()));
            }
            sql.push_str(" ORDER BY c.seq LIMIT 1000");
            let rows = tx.query(&sql, &params)?;
            let mut items = Vec::new();
            let mut roles_of: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
            // Who the authorizers are (name, active, roles) is directory data: only for those
            // who may read the audit log at organization level (auditors, admins), like the
            // principal and role-binding listings.
            let org_id = credvault_domain::OrgId::from_trusted(org.clone());
            let people = a.in_org(&org_id) && settings.role_policy.any_grants(&a.org_roles(), Permission::AuditRead);
            for r in rows {
                let health = r.opt_text(6)?.unwrap_or_else(|| if r.opt_text(5).ok().flatten().is_some() { "healthy".into() } else { "not_authorized".into() });
                if f.health.as_ref().is_some_and(|h| *h != health) {
                    continue;
                }
                let authorized_by = r.opt_text(5)?;
                let authorizer_roles = match authorized_by.as_ref().filter(|_| people) {
                    Some(p) => match roles_of.get(p) {
                        Some(roles) => roles.clone(),
                        None => {
                            let mut roles: Vec<String> = tx
                                .query(
                                    "SELECT DISTINCT role FROM role_bindings WHERE principal_id = $1 AND org_id = $2 ORDER BY role",
                                    &[p.as_str().into(), org.as_str().into()],
                                )?
                                .iter()
                                .map(|b| b.text(0))
                                .collect::<Result<_, _>>()?;
                            roles.dedup();
                            roles_of.insert(p.clone(), roles.clone());
                            roles
                        }
                    },
                    None => Vec::new(),
                };
                items.push(GrantView {
                    credential_id: r.text(0)?,
                    name: r.text(1)?,
                    org_id: r.text(2)?,
                    workspace_id: r.opt_text(3)?,
                    variant: r.opt_text(4)?,
                    authorized_by_name: if people { r.opt_text(9)? } else { None },
                    authorizer_active: match r.opt_text(9)? {
                        Some(_) if people => Some(!r.bool(10)?),
                        _ => None,
                    },
                    authorizer_roles,
                    authorized_by,
                    health,
                    health_reason: r.opt_text(7)?,
                    refreshed_at: r.opt_int(8)?.map(to_rfc3339),
                });
            }
            let _ = read_scope;
            Ok(Page { items, next_cursor: None })
        })
        .await
    }
}
