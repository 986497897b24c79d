//! API tokens: issue, list, revoke.

use super::*;

impl Service {
    /// Issues a token for a principal (organization admins). The token is returned once.
    pub async fn create_token(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreateToken,
    ) -> CoreResult<CreatedToken> {
        let expires_at = match &req.expires_at {
            Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
                CoreError::invalid("expires_at", Code::InvalidTimestamp, "must be an RFC 3339 timestamp")
            })?),
            None => None,
        };
        if expires_at.is_some_and(|e| e <= now_micros()) {
            return Err(CoreError::invalid(
                "expires_at",
                Code::InThePast,
                "must be in the future",
            ));
        }
        if let Some(n) = &req.name
            && n.len() > 128
        {
            return Err(CoreError::invalid(
                "name",
                Code::TooLong,
                "must be at most 128 characters",
            ));
        }
        let prepare = {
            let req = req.clone();
            move |tx: &mut dyn Tx| {
                let Some(org) = principal_org(tx, req.principal_id.as_str())? else {
                    return Err(CoreError::NotFound { what: "principal" });
                };
                let id = TokenId::generate();
                let draft = || Draft::new(Action::TokenCreate, "token", id.as_str(), org.as_str());
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "principal", draft());
                Ok(Plan::new((org, id), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, id)| {
            let a = ops.actor().clone();
            if !a.instance_admin && is_instance_admin(ops.tx(), req.principal_id.as_str())? {
                // An organization admin must not mint a token that acts beyond its organization.
                return Err(ops.forbid(Permission::OrgAdmin));
            }
            let (token, hash) = generate_token();
            let now = now_micros();
            insert_token(
                ops.tx(),
                &id,
                &org,
                req.principal_id.as_str(),
                &hash,
                req.name.as_deref(),
                expires_at,
                Some(a.principal_id.as_str()),
                now,
            )?;
            ops.record(ops.event().details(
                serde_json::json!({"principal_id": req.principal_id.as_str(), "expires_at": ts(expires_at)}),
            ))?;
            Ok(CreatedToken {
                id: id.to_string(),
                token: token.to_string(),
                principal_id: req.principal_id.to_string(),
                name: req.name.clone(),
                expires_at: ts(expires_at),
                created_at: to_rfc3339(now),
            })
        })
        .await
    }

    /// Tokens of a principal (admins, or the principal itself).
    pub async fn list_tokens(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        principal_id: Option<&str>,
    ) -> CoreResult<Page<TokenView>> {
        let principal = principal_id
            .map(str::to_owned)
            .unwrap_or_else(|| actor.principal_id.to_string());
        let prepare = {
            let principal = principal.clone();
            move |tx: &mut dyn Tx| {
                let Some(org) = principal_org(tx, &principal)? else {
                    return Err(CoreError::NotFound { what: "principal" });
                };
                let draft = Draft::new(Action::TokenRead, "principal", principal.as_str(), org.as_str());
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "principal", draft).or_self(&principal);
                Ok(Plan::new((), check))
            }
        };
        self.operate(ctx, actor, Mode::Read, prepare, move |ops, ()| {
            let tx = ops.tx();
            let rows = tx.query(
                &format!("SELECT {TOKEN_COLS} FROM tokens WHERE principal_id = $1 ORDER BY seq"),
                &[principal.as_str().into()],
            )?;
            Ok(Page {
                items: rows.iter().map(token_view).collect::<CoreResult<_>>()?,
                next_cursor: None,
            })
        })
        .await
    }

    /// Revokes a token (admins, or the token's own principal).
    pub async fn revoke_token(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<TokenView> {
        let id = id.to_owned();
        let prepare = {
            let id = id.clone();
            move |tx: &mut dyn Tx| {
                let Some(r) = tx.query_opt(
                    &format!("SELECT {TOKEN_COLS}, org_id FROM tokens WHERE id = $1"),
                    &[id.as_str().into()],
                )?
                else {
                    return Err(CoreError::NotFound { what: "token" });
                };
                let org = OrgId::from_trusted(r.text(7)?);
                let v = token_view(&r)?;
                let draft = Draft::new(Action::TokenRevoke, "token", id.as_str(), org.as_str())
                    .details(serde_json::json!({"principal_id": v.principal_id}));
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "token", draft).or_self(&v.principal_id);
                Ok(Plan::new(v, check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, mut v| {
            let a = ops.actor().clone();
            if v.principal_id != a.principal_id.as_str()
                && !a.instance_admin
                && is_instance_admin(ops.tx(), &v.principal_id)?
            {
                // An organization admin must not revoke what acts beyond its organization.
                return Err(ops.forbid(Permission::OrgAdmin));
            }
            if v.revoked_at.is_none() {
                let now = now_micros();
                ops.tx().execute(
                    "UPDATE tokens SET revoked_at = $1 WHERE id = $2",
                    &[now.into(), id.as_str().into()],
                )?;
                ops.record(ops.event())?;
                v.revoked_at = Some(to_rfc3339(now));
            }
            Ok(v)
        })
        .await
        .inspect(|_| self.clear_token_cache())
    }
}
