//! Principals (users and service accounts) and their role bindings.

use super::*;

impl Service {
    /// Creates a principal (organization admins).
    pub async fn create_principal(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreatePrincipal,
    ) -> CoreResult<PrincipalView> {
        check_name_field("name", &req.name)?;
        let org_in = req.org_id.clone();
        let kind = req.kind;
        let prepare = {
            move |_: &mut dyn Tx| {
                let org = org_in;
                let id = PrincipalId::generate(kind);
                let draft = || Draft::new(Action::PrincipalCreate, "principal", id.as_str(), org.as_str());
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "organization", draft());
                Ok(Plan::new((org, id), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, id)| {
            let a = ops.actor().clone();
            let now = now_micros();
            ops.tx().execute(
                "INSERT INTO principals (id, org_id, kind, name, instance_admin, disabled, created_at, created_by) VALUES ($1, $2, $3, $4, 0, 0, $5, $6)",
                &[id.as_str().into(), org.as_str().into(), req.kind.as_str().into(), req.name.as_str().into(), now.into(), a.principal_id.as_str().into()],
            )
            .map_err(|e| name_taken(e.into(), "principal"))?;
            ops.record(ops.event().details(serde_json::json!({"name": req.name, "kind": req.kind.as_str()})))?;
            Ok(PrincipalView {
                id: id.to_string(),
                org_id: org.to_string(),
                kind: req.kind.as_str().into(),
                name: req.name,
                instance_admin: false,
                disabled: false,
                created_at: to_rfc3339(now),
                bindings: None,
            })
        })
        .await
    }

    /// Principals of an organization (admins and auditors).
    pub async fn list_principals(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        org_id: Option<&str>,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> CoreResult<Page<PrincipalView>> {
        let org = org_id.map(str::to_owned).unwrap_or_else(|| actor.org_id.to_string());
        let after = crate::views::decode_cursor(cursor)?;
        let limit = self.page_limit(limit);
        let check = org_admin(&org, Action::PrincipalRead)?.or(Permission::AuditRead);
        self.operate(
            ctx,
            actor,
            Mode::Read,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| {
                let tx = ops.tx();
                let rows = tx.query(
                &format!(
                    "SELECT {PRINCIPAL_COLS}, seq FROM principals WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ),
                &[org.as_str().into(), after.into(), (limit as i64 + 1).into()],
            )?;
                page(rows, limit, 7, principal_view)
            },
        )
        .await
    }

    /// One principal (admins, auditors, or the principal itself), with its bindings.
    pub async fn get_principal(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<PrincipalView> {
        let id = id.to_owned();
        let prepare = {
            let id = id.clone();
            move |tx: &mut dyn Tx| {
                let Some(r) = tx.query_opt(
                    &format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE id = $1"),
                    &[id.as_str().into()],
                )?
                else {
                    return Err(CoreError::NotFound { what: "principal" });
                };
                let v = principal_view(&r)?;
                let org = OrgId::from_trusted(v.org_id.clone());
                let draft = Draft::new(Action::PrincipalRead, "principal", id.as_str(), v.org_id.as_str());
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "principal", draft)
                    .or(Permission::AuditRead)
                    .or_self(&id);
                Ok(Plan::new(v, check))
            }
        };
        self.operate(ctx, actor, Mode::Read, prepare, move |ops, mut v| {
            v.bindings = Some(bindings_of(ops.tx(), &id)?);
            Ok(v)
        })
        .await
    }

    /// Binds a role (admins of the scope).
    pub async fn create_role_binding(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreateRoleBinding,
    ) -> CoreResult<RoleBindingView> {
        if req.workspace_id.is_some() == req.org_id.is_some() {
            return Err(CoreError::invalid(
                "workspace_id",
                Code::ScopeRequired,
                "give exactly one of workspace_id or org_id",
            ));
        }
        let prepare = {
            let req = req.clone();
            move |tx: &mut dyn Tx| {
                let Some(p_org) = principal_org(tx, req.principal_id.as_str())? else {
                    return Err(CoreError::NotFound { what: "principal" });
                };
                let org = match (&req.workspace_id, &req.org_id) {
                    (Some(ws), _) => {
                        workspace_org(tx, ws.as_str())?.ok_or(CoreError::NotFound { what: "workspace" })?
                    }
                    (None, Some(o)) => o.clone(),
                    (None, None) => return Err(CoreError::Internal("scope checked above".into())),
                };
                let id = BindingId::generate();
                let draft = || {
                    Draft::new(Action::RoleBindingCreate, "role_binding", id.as_str(), org.as_str())
                        .workspace(req.workspace_id.as_ref().map(|w| w.as_str()))
                };
                let scope = match &req.workspace_id {
                    Some(ws) => Scope::Workspace(&org, ws),
                    None => Scope::Org(&org),
                };
                let check = Check::new(scope, Permission::OrgAdmin, "organization", draft());
                Ok(Plan::new((org, id, p_org), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, id, p_org)| {
            let a = ops.actor().clone();
            if p_org != org {
                // Answer as for an unknown ID: the caller must not learn that a principal of
                // another organization exists.
                return Err(CoreError::NotFound { what: "principal" });
            }
            let now = now_micros();
            let scope_key = req.workspace_id.as_ref().map_or(org.as_str(), |w| w.as_str()).to_owned();
            ops.tx().execute(
                "INSERT INTO role_bindings (id, org_id, principal_id, role, workspace_id, scope_key, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    id.as_str().into(),
                    org.as_str().into(),
                    req.principal_id.as_str().into(),
                    req.role.as_str().into(),
                    req.workspace_id.as_ref().map(|w| w.as_str()).into(),
                    scope_key.into(),
                    now.into(),
                    a.principal_id.as_str().into(),
                ],
            )
            .map_err(|e| match CoreError::from(e) {
                CoreError::Store(StoreError::Unique(_)) => CoreError::conflict(Code::BindingExists, "this principal already has this role in this scope"),
                other => other,
            })?;
            ops.record(ops.event().details(serde_json::json!({"principal_id": req.principal_id.as_str(), "role": req.role.as_str()})))?;
            Ok(RoleBindingView {
                id: id.to_string(),
                principal_id: req.principal_id.to_string(),
                role: req.role.as_str().into(),
                org_id: org.to_string(),
                workspace_id: req.workspace_id.map(|w| w.to_string()),
                created_at: to_rfc3339(now),
            })
        })
        .await
        .inspect(|_| self.clear_token_cache())
    }

    /// Role bindings of an organization, optionally of one principal.
    pub async fn list_role_bindings(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        org_id: Option<&str>,
        principal_id: Option<&str>,
    ) -> CoreResult<Page<RoleBindingView>> {
        let org = org_id.map(str::to_owned).unwrap_or_else(|| actor.org_id.to_string());
        let principal = principal_id.map(str::to_owned);
        let mut check = org_admin(&org, Action::RoleBindingRead)?.or(Permission::AuditRead);
        if let Some(p) = &principal {
            check = check.or_self(p);
        }
        self.operate(
            ctx,
            actor,
            Mode::Read,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| {
                let tx = ops.tx();
                let rows = match &principal {
                Some(p) => tx.query(
                    &format!(
                        "SELECT {BINDING_COLS} FROM role_bindings WHERE org_id = $1 AND principal_id = $2 ORDER BY seq"
                    ),
                    &[org.as_str().into(), p.as_str().into()],
                )?,
                None => tx.query(
                    &format!("SELECT {BINDING_COLS} FROM role_bindings WHERE org_id = $1 ORDER BY seq"),
                    &[org.as_str().into()],
                )?,
            };
                Ok(Page {
                    items: rows.iter().map(binding_view).collect::<CoreResult<_>>()?,
                    next_cursor: None,
                })
            },
        )
        .await
    }

    /// Removes a role binding (admins of its scope).
    pub async fn delete_role_binding(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
    ) -> CoreResult<RoleBindingView> {
        let id = id.to_owned();
        let prepare = {
            let id = id.clone();
            move |tx: &mut dyn Tx| {
                let Some(r) = tx.query_opt(
                    &format!("SELECT {BINDING_COLS} FROM role_bindings WHERE id = $1"),
                    &[id.as_str().into()],
                )?
                else {
                    return Err(CoreError::NotFound { what: "role binding" });
                };
                let v = binding_view(&r)?;
                let org = OrgId::from_trusted(v.org_id.clone());
                let ws = v.workspace_id.clone().map(WorkspaceId::from_trusted);
                let draft = || {
                    Draft::new(
                        Action::RoleBindingDelete,
                        "role_binding",
                        id.as_str(),
                        v.org_id.as_str(),
                    )
                    .workspace(v.workspace_id.as_deref())
                };
                let scope = match &ws {
                    Some(w) => Scope::Workspace(&org, w),
                    None => Scope::Org(&org),
                };
                let check = Check::new(scope, Permission::OrgAdmin, "role binding", draft());
                Ok(Plan::new(v, check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, v| {
            ops.tx()
                .execute("DELETE FROM role_bindings WHERE id = $1", &[id.as_str().into()])?;
            ops.record(
                ops.event()
                    .details(serde_json::json!({"principal_id": v.principal_id, "role": v.role})),
            )?;
            Ok(v)
        })
        .await
        .inspect(|_| self.clear_token_cache())
    }
}
