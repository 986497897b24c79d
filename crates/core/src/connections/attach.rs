//! Attaching and detaching credentials: the attachment rules, destinations, detach-all.

use super::*;

/// Whether `cred` fits a `kind` connection with `config` (type, variant, authentication).
pub(super) fn fits(kind: ConnectorKind, config: &Json, cred: &CredRow) -> CoreResult<()> {
    let ty = CredentialType::parse(&cred.ty).ok_or_else(|| CoreError::Internal(format!("stored type {}", cred.ty)))?;
    kind.fits_config(ty, cred.variant.as_deref(), config).map_err(|why| {
        CoreError::invalid(
            "credential_id",
            Code::CredentialTypeMismatch,
            format!(
                "a {}{} credential does not fit this {} connection; {why}",
                cred.ty,
                cred.variant.as_deref().map(|v| format!(" ({v})")).unwrap_or_default(),
                kind.as_str(),
            ),
        )
    })
}

/// The attachment rules. Returns the override reason to store (if an allowed mismatch).
#[allow(clippy::too_many_arguments)]
pub(super) fn check_attachment(
    conn_org: &str,
    conn_ws: &str,
    conn_env: &str,
    kind: ConnectorKind,
    config: &Json,
    cred: &CredRow,
    settings: &OrgSettings,
    override_reason: Option<&str>,
) -> CoreResult<Option<String>> {
    let visible = cred.org_id == conn_org && cred.workspace_id.as_deref().is_none_or(|w| w == conn_ws);
    if !visible {
        // Same answer as for an unknown ID: nothing about other workspaces leaks.
        return Err(CoreError::NotFound { what: "credential" });
    }
    if cred.status != CredentialStatus::Active {
        return Err(CoreError::conflict(
            Code::CredentialNotActive,
            format!(
                "the credential is {}; only active credentials can be attached",
                cred.status
            ),
        ));
    }
    fits(kind, config, cred)?;
    if cred.environment == conn_env {
        return Ok(None);
    }
    if !settings.allow_environment_override {
        return Err(CoreError::conflict(
            Code::EnvironmentMismatch,
            format!(
                "the credential is tagged `{}` but the connection is `{}`; this organization does not allow overrides",
                cred.environment, conn_env
            ),
        ));
    }
    match override_reason.map(str::trim).filter(|r| !r.is_empty()) {
        None => Err(CoreError::invalid(
            "override_reason",
            Code::OverrideReasonRequired,
            format!(
                "the credential is tagged `{}` but the connection is `{}`: give a written override_reason",
                cred.environment, conn_env
            ),
        )),
        Some(r) if r.len() > 1024 => Err(CoreError::invalid(
            "override_reason",
            Code::TooLong,
            "at most 1024 bytes",
        )),
        Some(r) => Ok(Some(r.to_owned())),
    }
}

/// Checks a connection's destinations against `cred` and the sources of its role chain
/// (locked: an owner's wiring widens their sets, trust on first use). See `destinations.rs`.
#[allow(clippy::too_many_arguments)]
pub(super) fn admit_destinations(
    tx: &mut dyn Tx,
    actor: &Actor,
    settings: &OrgSettings,
    cred: CredRow,
    kind: &str,
    config: &Json,
    dns: &Dns,
    draft: impl Fn() -> Draft,
) -> CoreResult<Vec<Holder>> {
    let public = current_public_fields(tx, &cred)?;
    let mut hs = holders(tx, cred, &public, true)?;
    let dests = of_connection(kind, config)?;
    admit(actor, settings, &mut hs, &dests, dns, true, draft)?;
    Ok(hs)
}

impl Service {
    /// Attaches (or replaces) a connection's credential under the attachment rules.
    pub async fn attach_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: AttachCredential,
    ) -> CoreResult<ConnectionView> {
        self.with_dns(|dns| self.attach_credential_once(ctx, actor, id, req.clone(), dns))
            .await
    }

    async fn attach_credential_once(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: AttachCredential,
        dns: Dns,
    ) -> CoreResult<ConnectionView> {
        let id = id.to_owned();
        let plan = connection_plan(&id, true, Permission::CredentialAttach, Action::ConnectionAttach);
        let details = serde_json::json!({"credential_id": req.credential_id});
        let prepare = move |tx: &mut dyn Tx| plan(tx).map(|p| p.details(details));
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            let settings = ops.settings().clone();
            let a = ops.actor().clone();
            let cred = load_cred(ops.tx(), req.credential_id.as_str(), true).map_err(|e| with_field(e, "credential_id"))?;
            let kind = parse_kind(&c.kind)?;
            let config: Json = serde_json::from_str(&c.config)?;
            let reason = check_attachment(&c.org_id, &c.workspace_id, &c.environment, kind, &config, &cred, &settings, req.override_reason.as_deref()).map_err(|e| with_field(e, "credential_id"))?;
            let cred_env = cred.environment.clone();
            let event = ops.event();
            let hs = admit_destinations(ops.tx(), &a, &settings, cred, &c.kind, &config, &dns, || event.clone())?;
            let now = now_micros();
            ops.tx().execute(
                "UPDATE connections SET credential_id = $1, override_reason = $2, attached_at = $3, attached_by = $4, updated_at = $3 WHERE id = $5",
                &[req.credential_id.as_str().into(), reason.clone().into(), now.into(), a.principal_id.as_str().into(), id.as_str().into()],
            )?;
            let allowed = save_additions(ops, &hs, &id)?;
            ops.record(c.draft(Action::ConnectionAttach).details(serde_json::json!({
                    "credential_id": req.credential_id, "previous_credential_id": c.credential_id,
                    "override_reason": reason, "credential_environment": cred_env, "connection_environment": c.environment,
                    "destinations_allowed": allowed,
                })))?;
            load_conn(ops.tx(), &id, false)?.view()
        })
        .await
    }

    /// Detaches a connection's credential.
    pub async fn detach_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
    ) -> CoreResult<ConnectionView> {
        let id = id.to_owned();
        let prepare = connection_plan(&id, true, Permission::CredentialAttach, Action::ConnectionDetach);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            if c.credential_id.is_some() {
                let now = now_micros();
                ops.tx().execute(
                    "UPDATE connections SET credential_id = NULL, override_reason = NULL, attached_at = NULL, attached_by = NULL, updated_at = $1 WHERE id = $2",
                    &[now.into(), id.as_str().into()],
                )?;
                ops.record(c.draft(Action::ConnectionDetach).details(serde_json::json!({"credential_id": c.credential_id})))?;
            }
            load_conn(ops.tx(), &id, false)?.view()
        })
        .await
    }
}

impl Service {
    /// Incident response: detaches a credential from every connection at once (admins),
    /// auditing each connection, and says which pipelines are affected.
    pub async fn detach_all(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<DetachAll> {
        let id = id.to_owned();
        let prepare = credential_plan(
            &id,
            true,
            Access::Write,
            Permission::CredentialDelete,
            Action::CredentialDetachAll,
        );
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            let usage = usage_of(ops.tx(), &id)?;
            let now = now_micros();
            for conn in &usage.connections {
                ops.tx().execute(
                    "UPDATE connections SET credential_id = NULL, override_reason = NULL, attached_at = NULL, attached_by = NULL, updated_at = $1 WHERE id = $2",
                    &[now.into(), conn.id.as_str().into()],
                )?;
                ops.record(Draft::new(Action::ConnectionDetach, "connection", conn.id.as_str(), c.org_id.as_str())
                        .workspace(Some(conn.workspace_id.as_str()))
                        .details(serde_json::json!({"credential_id": id, "reason": "detach_all"})))?;
            }
            ops.record(c.draft(Action::CredentialDetachAll).details(serde_json::json!({
                    "connections": usage.connections.iter().map(|u| &u.id).collect::<Vec<_>>(),
                    "affected_pipelines": usage.pipelines.iter().map(|u| &u.id).collect::<Vec<_>>(),
                })))?;
            Ok(DetachAll { detached: usage.connections, affected_pipelines: usage.pipelines })
        })
        .await
    }
}
