//! The OAuth grants report: which OAuth credentials exist, who authorized each, and how they are.

use super::*;

impl Service {
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
