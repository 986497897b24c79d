//! Versions: create (stage or replace, with kept fields), promote, revoke.

use super::*;

impl Service {
    /// Adds a version: `stage` makes it `pending`; `replace` makes it `current` at once and
    /// revokes the old current version.
    pub async fn create_version(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        mut req: CreateVersion,
    ) -> CoreResult<CreatedVersion> {
        self.inner.config.audit_gate.check()?;
        // Zeroized on every path, including refusals before validation.
        let mut fields = SecretJson::new(std::mem::take(&mut req.fields));
        let mode = req.mode;
        let keep = std::mem::take(&mut req.keep);
        check_keep(fields.expose(), &keep)?;
        let keyring = self.keyring_arc()?;
        let id = id.to_owned();
        let prepare = credential_plan(
            &id,
            true,
            Access::Write,
            Permission::CredentialCreate,
            Action::CredentialVersionCreate,
        );
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            if c.status == CredentialStatus::Purged {
                return Err(CoreError::conflict(Code::CredentialPurged, "the credential was purged; its keys are destroyed and it cannot change"));
            }
            if c.status == CredentialStatus::PendingDeletion {
                return Err(CoreError::conflict(Code::CredentialDeleted, "the credential is pending deletion; restore it first"));
            }
            let ty = CredentialType::parse(&c.ty).ok_or_else(|| CoreError::Internal(format!("stored type {}", c.ty)))?;
            let kept_from = if keep.is_empty() {
                None
            } else {
                Some(carry_over(ops.tx(), &keyring, &c, fields.expose_mut(), &keep)?)
            };
            let validated = validate_fields(ty, c.variant.as_deref(), fields.take())?;
            // Kept secrets go only where the current ones go: with `keep`, every non-secret
            // field (token and authority URLs, the SSH bastion, user names) must stay as it is,
            // or someone allowed to add versions could send secrets they cannot read to a host
            // of their choosing. Changing those means entering every secret again.
            if let Some(public) = kept_from
                && validated.public != public
            {
                return Err(CoreError::invalid(
                    "keep",
                    Code::KeptWithChangedFields,
                    "secrets can be kept only when every non-secret field stays as it is; to change those, enter all the secrets again",
                ));
            }
            check_references(ops.tx(), &c.org_id, c.workspace_id.as_deref(), ty, &validated, &c.id)?;
            let next = ops.tx().query_one("SELECT COALESCE(MAX(version), 0) + 1 FROM credential_versions WHERE credential_id = $1", &[id.as_str().into()])?.int(0)?;
            let secret = SecretJson::new(validated.secret.expose().clone());
            let sealed = seal(&keyring, &c.org_id, &c.id, next, secret)?;
            let now = now_micros();
            let a = ops.actor().clone();
            let by = a.principal_id.as_str();
            let state = match mode {
                VersionMode::Stage => VersionState::Pending,
                VersionMode::Replace => {
                    ops.tx().execute(
                        "UPDATE credential_versions SET state = 'revoked', state_changed_at = $1 WHERE credential_id = $2 AND state = 'current'",
                        &[now.into(), id.as_str().into()],
                    )?;
                    ops.tx().execute("UPDATE credentials SET current_version = $1, updated_at = $2 WHERE id = $3", &[next.into(), now.into(), id.as_str().into()])?;
                    VersionState::Current
                }
            };
            insert_version(ops.tx(), &id, next, state, &sealed, &validated, by, now)?;
            ops.record(c.draft(Action::CredentialVersionCreate).details(serde_json::json!({
                    "version": next, "state": state, "mode": if mode == VersionMode::Stage { "stage" } else { "replace" },
                    "secret_fields_set": validated.secret_fields_set, "kept_fields": keep
                })))?;
            Ok(CreatedVersion { credential_id: id, version: next, state })
        })
        .await
    }

    /// Makes version `n` current; the old current version becomes `previous`.
    pub async fn promote_version(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        n: i64,
    ) -> CoreResult<CredentialView> {
        self.promote_version_noted(ctx, actor, id, n, &[]).await
    }

    /// [`Service::promote_version`], recording in its audit event the dependents nobody
    /// could test (a rotation with `allow_untestable`).
    pub(crate) async fn promote_version_noted(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        n: i64,
        untested: &[String],
    ) -> CoreResult<CredentialView> {
        let id = id.to_owned();
        let untested = untested.to_vec();
        let mut details = serde_json::json!({ "version": n });
        if !untested.is_empty() {
            details["untested_connections"] = serde_json::json!(untested);
        }
        let plan = credential_plan(
            &id,
            true,
            Access::Write,
            Permission::CredentialCreate,
            Action::CredentialVersionPromote,
        );
        let prepare = move |tx: &mut dyn Tx| plan(tx).map(|p| p.details(details));
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            if c.status == CredentialStatus::Purged {
                return Err(CoreError::conflict(Code::CredentialPurged, "the credential was purged; its keys are destroyed and it cannot change"));
            }
            if c.status == CredentialStatus::PendingDeletion {
                return Err(CoreError::conflict(Code::CredentialDeleted, "the credential is pending deletion; restore it first"));
            }
            let state = version_state(ops.tx(), &id, n)?;
            match state.as_str() {
                "pending" | "previous" => {}
                "current" => return Err(CoreError::conflict(Code::AlreadyCurrent, format!("version {n} is already current"))),
                _ => return Err(CoreError::conflict(Code::VersionRevoked, format!("version {n} is revoked and cannot be promoted"))),
            }
            let now = now_micros();
            // Demote first: the partial unique index allows one `current` row at a time.
            ops.tx().execute(
                "UPDATE credential_versions SET state = 'revoked', state_changed_at = $1 WHERE credential_id = $2 AND state = 'previous'",
                &[now.into(), id.as_str().into()],
            )?;
            ops.tx().execute(
                "UPDATE credential_versions SET state = 'previous', state_changed_at = $1 WHERE credential_id = $2 AND state = 'current'",
                &[now.into(), id.as_str().into()],
            )?;
            ops.tx().execute(
                "UPDATE credential_versions SET state = 'current', state_changed_at = $1 WHERE credential_id = $2 AND version = $3",
                &[now.into(), id.as_str().into(), n.into()],
            )?;
            ops.tx().execute("UPDATE credentials SET current_version = $1, updated_at = $2 WHERE id = $3", &[n.into(), now.into(), id.as_str().into()])?;
            let mut d = ops.event();
            d.details["previous_version"] = c.current_version.into();
            ops.record(d)?;
            let c = load_cred(ops.tx(), &id, false)?;
            full_view(ops.tx(), &c)
        })
        .await
    }

    /// Revokes version `n` (never the current one).
    pub async fn revoke_version(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        n: i64,
    ) -> CoreResult<CredentialView> {
        let id = id.to_owned();
        let plan = credential_plan(
            &id,
            true,
            Access::Write,
            Permission::CredentialCreate,
            Action::CredentialVersionRevoke,
        );
        let prepare = move |tx: &mut dyn Tx| plan(tx).map(|p| p.details(serde_json::json!({ "version": n })));
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, _| {
            let state = version_state(ops.tx(), &id, n)?;
            if state == "current" {
                return Err(CoreError::conflict(Code::CannotRevokeCurrent, "the current version cannot be revoked; promote another version first"));
            }
            if state != "revoked" {
                let now = now_micros();
                ops.tx().execute(
                    "UPDATE credential_versions SET state = 'revoked', state_changed_at = $1 WHERE credential_id = $2 AND version = $3",
                    &[now.into(), id.as_str().into(), n.into()],
                )?;
                ops.tx().execute("UPDATE credentials SET updated_at = $1 WHERE id = $2", &[now.into(), id.as_str().into()])?;
                ops.record(ops.event().details(serde_json::json!({ "version": n, "was": state })))?;
            }
            let c = load_cred(ops.tx(), &id, false)?;
            full_view(ops.tx(), &c)
        })
        .await
    }
}

/// The shape of a `keep` list, checked before any store access: distinct top-level names
/// that `fields` does not also give.
pub(super) fn check_keep(fields: &Json, keep: &[String]) -> CoreResult<()> {
    if keep.len() > 32 {
        return Err(CoreError::invalid(
            "keep",
            Code::TooMany,
            "at most 32 fields can be kept",
        ));
    }
    for (i, k) in keep.iter().enumerate() {
        if k.is_empty() || k.len() > 64 || keep[..i].contains(k) {
            return Err(CoreError::invalid(
                format!("keep[{i}]"),
                Code::InvalidKeep,
                "names a top-level field once",
            ));
        }
        if fields.get(k).is_some() {
            return Err(CoreError::invalid(
                format!("keep[{i}]"),
                Code::KeptAndGiven,
                format!("`{k}` is both given in fields and kept; give one"),
            ));
        }
    }
    Ok(())
}

/// Copies the `keep` fields of the current version (opened here, in the writer) into
/// `fields`; everything else it opened is zeroized before returning. Returns the current
/// version's public (non-secret) fields, which the new version must repeat unchanged (see
/// `create_version`).
pub(super) fn carry_over(
    tx: &mut dyn Tx,
    keyring: &Keyring,
    c: &CredRow,
    fields: &mut Json,
    keep: &[String],
) -> CoreResult<Json> {
    // `null` stands for no fields where the variant has no required one (the document allows it).
    if fields.is_null() {
        *fields = Json::Object(serde_json::Map::new());
    }
    let Json::Object(target) = fields else {
        return Err(CoreError::invalid("fields", Code::InvalidType, "must be an object"));
    };
    let r = sealed_row(tx, &c.id, c.current_version)?;
    let public: Json = serde_json::from_str(&r.text(3)?)?;
    let mut current = open_sealed_row(keyring, &c.org_id, &c.id, c.current_version, &r, 0, None)?;
    let mut missing = None;
    if let Json::Object(cur) = &mut current {
        for (i, k) in keep.iter().enumerate() {
            match cur.remove(k) {
                Some(v) => {
                    target.insert(k.clone(), v);
                }
                None => {
                    missing = Some((i, k.clone()));
                    break;
                }
            }
        }
    }
    credvault_domain::secret::zeroize_json(&mut current);
    match missing {
        Some((i, k)) => Err(CoreError::invalid(
            format!("keep[{i}]"),
            Code::NotInCurrentVersion,
            format!("the current version (v{}) has no `{k}` to keep", c.current_version),
        )),
        None => Ok(public),
    }
}
