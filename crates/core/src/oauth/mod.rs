//! OAuth credentials: consent (authorization code + PKCE, single-use `state` bound to the
//! credential and principal, 10 minutes), proactive single-flight refresh with rotating
//! refresh tokens, grant health, and the grants listing.
//!
//! Single flight: one refresh per credential per node (an async mutex), and across nodes a
//! lease row in the store (`oauth_leases`); everyone else waits for the new token. Every
//! request that arrived before a refresh stored its tokens takes them, whatever the skew says
//! (`RequestCtx::received_at`, compared with `oauth_refreshed_at`). A rotated
//! refresh token is stored in the same transaction as the new access token (the current
//! version is re-sealed in place), so the old refresh token is never used again.

use crate::actions::Action;
use credvault_domain::problems::Code;
use credvault_domain::states::CredentialStatus;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use credvault_connect::oauth::{OAuthError, pkce, state as new_state, token_request};
use credvault_domain::roles::Permission;
use credvault_domain::time::{now_micros, parse_rfc3339, to_rfc3339};
use credvault_domain::{PrincipalId, PrincipalKind};
use credvault_store::Tx;

use crate::Service;
use crate::audit::{self, ActorRef, Draft, Outcome};
use crate::context::{Actor, RequestCtx};
use crate::credentials::{
    Access, CredRow, credential_plan, decrypt_version, load_cred, read_scope, replace_version_internal, reseal_current,
};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode};

use crate::views::Page;

mod grants;
pub use grants::{GrantRevoked, RevokeGrantRequest};
mod refresh;

/// OAuth settings of the server.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The server's public base URL; the callback is `{public_url}/v1/oauth/callback`.
    pub public_url: String,
    /// Refresh an access token this many seconds before it expires.
    pub refresh_skew_secs: i64,
    /// The scheduler refreshes a grant nobody used for this many days, so refresh tokens that
    /// expire when idle stay alive between rare pipeline runs (0: never).
    pub keepalive_days: i64,
}

/// Decrypted fields, zeroized when dropped.
struct ZeroJson(Json);

impl Drop for ZeroJson {
    fn drop(&mut self) {
        credvault_domain::secret::zeroize_json(&mut self.0);
    }
}

/// A claimed OAuth state: (credential, principal, authorized-as, code verifier + U+0001 + redirect URI).
type Claimed = (String, String, String, String);

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            public_url: "http://127.0.0.1:8080".into(),
            refresh_skew_secs: 60,
            keepalive_days: 7,
        }
    }
}

/// Request: start consent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// Record the consent under a service account (admins; offboarding).
    #[serde(default, rename = "as")]
    pub as_principal: Option<PrincipalId>,
}

/// Where to send the browser.
#[derive(Clone, Debug, Serialize)]
pub struct AuthorizeStart {
    /// The provider's authorization URL with state and PKCE challenge.
    pub authorization_url: String,
    /// The single-use state (also inside the URL).
    pub state: String,
    /// The callback the provider will redirect to.
    pub redirect_uri: String,
    /// RFC 3339; the state is refused after this.
    pub expires_at: String,
}

/// What the callback tells the browser.
#[derive(Clone, Debug)]
pub struct CallbackOutcome {
    /// Whether consent was stored.
    pub ok: bool,
    /// One line for the page.
    pub message: String,
}

/// One OAuth grant in the listing.
#[derive(Clone, Debug, Serialize)]
pub struct GrantView {
    /// The credential.
    pub credential_id: String,
    /// Its name.
    pub name: String,
    /// Organization.
    pub org_id: String,
    /// Workspace (`null`: organization-wide).
    pub workspace_id: Option<String>,
    /// `authorization_code` or `client_credentials`.
    pub variant: Option<String>,
    /// Who consented.
    pub authorized_by: Option<String>,
    /// Their name (only for callers who may read the audit log; otherwise `null`, like the
    /// next two).
    pub authorized_by_name: Option<String>,
    /// Whether they are still active (`false`: disabled or offboarded, so the grant hangs on a
    /// person who left: re-authorize it under a service account).
    pub authorizer_active: Option<bool>,
    /// Their roles in the organization now (any scope), for reviewing the grant against
    /// role changes.
    pub authorizer_roles: Vec<String>,
    /// `healthy`, `refresh_failing`, `needs_reauthorization` or `not_authorized`.
    pub health: String,
    /// Why, when not healthy.
    pub health_reason: Option<String>,
    /// Last successful refresh, RFC 3339.
    pub refreshed_at: Option<String>,
}

/// Filters of the grants listing.
#[derive(Clone, Debug, Default)]
pub struct GrantFilter {
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only grants this principal authorized.
    pub authorized_by: Option<String>,
    /// Only this health.
    pub health: Option<String>,
}

const STATE_TTL_US: i64 = 600_000_000;

/// The client's authentication at the provider's endpoints, from a credential's fields.
pub(crate) fn client_auth(fields: &Json) -> (credvault_connect::oauth::ClientAuth, &str, &str) {
    (
        credvault_connect::oauth::ClientAuth::from_field(
            fields.get("token_endpoint_auth_method").and_then(Json::as_str),
        ),
        str_field(fields, "client_id"),
        str_field(fields, "client_secret"),
    )
}

/// Puts what a token endpoint answered into a credential's fields: the access token and its
/// expiry, a (rotated) refresh token, and the answer's other values merged into
/// `token_extras` (a refresh that omits `instance_url` keeps the one consent stored).
pub(crate) fn store_tokens(fields: &mut Json, tokens: &credvault_connect::oauth::Tokens, now: i64) {
    let Json::Object(m) = fields else { return };
    m.insert("access_token".into(), Json::String(tokens.access_token.to_string()));
    if let Some(r) = &tokens.refresh_token {
        m.insert("refresh_token".into(), Json::String(r.to_string()));
    }
    match tokens.expires_in {
        Some(s) => m.insert(
            "access_token_expires_at".into(),
            Json::String(to_rfc3339(now + s.saturating_mul(1_000_000))),
        ),
        None => m.remove("access_token_expires_at"),
    };
    if !tokens.extras.is_empty() {
        let extras = m.entry("token_extras").or_insert_with(|| json!({}));
        if !extras.is_object() {
            *extras = json!({});
        }
        if let Json::Object(e) = extras {
            for (k, v) in &tokens.extras {
                e.insert(k.clone(), Json::String(v.to_string()));
            }
        }
    }
}

/// Whether the fields hold an access token that is good for at least `skew` more seconds.
pub(crate) fn token_fresh(fields: &Json, skew_secs: i64) -> bool {
    if fields
        .get("access_token")
        .and_then(Json::as_str)
        .is_none_or(str::is_empty)
    {
        return false;
    }
    match fields
        .get("access_token_expires_at")
        .and_then(Json::as_str)
        .and_then(parse_rfc3339)
    {
        Some(exp) => exp > now_micros() + skew_secs * 1_000_000,
        None => true,
    }
}

/// A string field of a credential's fields, or "" when absent.
pub(crate) fn str_field<'a>(f: &'a Json, k: &str) -> &'a str {
    f.get(k).and_then(Json::as_str).unwrap_or_default()
}

fn set_health(tx: &mut dyn Tx, cred: &str, health: &str, reason: Option<&str>) -> CoreResult<bool> {
    let before = tx
        .query_opt("SELECT oauth_health FROM credentials WHERE id = $1", &[cred.into()])?
        .and_then(|r| r.opt_text(0).ok().flatten());
    tx.execute(
        "UPDATE credentials SET oauth_health = $1, oauth_health_reason = $2 WHERE id = $3",
        &[health.into(), reason.into(), cred.into()],
    )?;
    Ok(before.as_deref() != Some(health))
}

fn node_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        credvault_connect::oauth::state().get(..8).unwrap_or("x")
    )
}

impl Service {
    /// Starts consent for an `authorization_code` OAuth credential.
    pub async fn oauth_authorize(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: AuthorizeRequest,
    ) -> CoreResult<AuthorizeStart> {
        let redirect_uri = format!(
            "{}/v1/oauth/callback",
            self.inner.config.oauth.public_url.trim_end_matches('/')
        );
        let redirect = redirect_uri.clone();
        let plan = credential_plan(
            id,
            false,
            Access::Write,
            Permission::CredentialCreate,
            Action::OauthAuthorizeStart,
        );
        self.operate(ctx, actor, Mode::Write, plan, move |ops, c| {
            let a = ops.actor().clone();
            if c.ty != "oauth" || c.variant.as_deref() != Some("authorization_code") {
                return Err(CoreError::conflict(Code::NotAnAuthorizationCodeCredential, "consent is for oauth credentials of variant authorization_code"));
            }
            if c.status != CredentialStatus::Active {
                return Err(CoreError::conflict(Code::CredentialNotActive, format!("the credential is {}", c.status)));
            }
            let authorized_as = match &req.as_principal {
                None => a.principal_id.to_string(),
                Some(p) => {
                    ops.check(Check::new(crate::auth::Scope::Org(&c.org()), Permission::OrgAdmin, "credential", ops.event()))?;
                    if p.kind() != PrincipalKind::ServiceAccount {
                        return Err(CoreError::invalid("as", Code::NotAServiceAccount, "consent can be recorded under a service account only"));
                    }
                    let ok = ops.tx().query_opt("SELECT 1 FROM principals WHERE id = $1 AND org_id = $2 AND disabled = 0", &[p.as_str().into(), c.org_id.as_str().into()])?.is_some();
                    if !ok {
                        return Err(CoreError::invalid("as", Code::NotFound, "no such active service account in this organization"));
                    }
                    p.to_string()
                }
            };
            let public: Json = ops.tx()
                .query_one("SELECT public_fields FROM credential_versions WHERE credential_id = $1 AND version = $2", &[c.id.as_str().into(), c.current_version.into()])?
                .text(0)
                .map(|t| serde_json::from_str(&t))??;
            let auth_url = str_field(&public, "authorization_url");
            let mut url = reqwest::Url::parse(auth_url).map_err(|_| CoreError::conflict(Code::BadAuthorizationUrl, "the credential's authorization_url is not a URL"))?;
            let (verifier, challenge) = pkce();
            let state = new_state();
            let scopes = public.get("scopes").and_then(Json::as_array).map(|a| a.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default();
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("response_type", "code");
                q.append_pair("client_id", str_field(&public, "client_id"));
                q.append_pair("redirect_uri", &redirect);
                if !scopes.is_empty() {
                    q.append_pair("scope", &scopes);
                }
                // The credential's own parameters (Google's access_type=offline, a login hint);
                // never one credvault sets (refused when written, skipped here all the same).
                let extra = public.get("authorization_params").and_then(Json::as_object);
                // Providers issue a refresh token for offline access only on explicit consent.
                if scopes.split(' ').any(|s| s == "offline_access") && !extra.is_some_and(|e| e.contains_key("prompt")) {
                    q.append_pair("prompt", "consent");
                }
                for (k, v) in extra.into_iter().flatten() {
                    if let Some(v) = v.as_str().filter(|_| !credvault_domain::credential_types::OAUTH_OWN_PARAMS.contains(&k.as_str())) {
                        q.append_pair(k, v);
                    }
                }
                q.append_pair("state", &state);
                q.append_pair("code_challenge", &challenge);
                q.append_pair("code_challenge_method", "S256");
            }
            let now = now_micros();
            ops.tx().execute(
                "INSERT INTO oauth_states (state, credential_id, principal_id, authorized_as, code_verifier, redirect_uri, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    state.as_str().into(),
                    c.id.as_str().into(),
                    a.principal_id.as_str().into(),
                    authorized_as.as_str().into(),
                    verifier.as_str().into(),
                    redirect.as_str().into(),
                    now.into(),
                    (now + STATE_TTL_US).into(),
                ],
            )?;
            ops.record(ops.event().details(json!({"authorized_as": authorized_as})))?;
            Ok(AuthorizeStart { authorization_url: url.to_string(), state, redirect_uri: redirect, expires_at: to_rfc3339(now + STATE_TTL_US) })
        })
        .await
    }

    /// Records an OAuth callback's outcome for the person it came back for, in a write of its own.
    async fn record_as_user(&self, ctx: &RequestCtx, principal: String, d: Draft) -> CoreResult<()> {
        let ctx = ctx.clone();
        self.inner
            .store
            .write(move |tx| audit::append(tx, &ctx, &ActorRef::user(Some(principal)), &d).map(|_| ()))
            .await
    }

    /// The provider redirected the browser back: check the state (single use), exchange the
    /// code, and store the tokens as a new current version. Never fails with an error: the
    /// outcome is shown to the browser, and every refusal is audited.
    pub async fn oauth_callback(
        &self,
        ctx: &RequestCtx,
        code: Option<String>,
        state: Option<String>,
        provider_error: Option<String>,
    ) -> CallbackOutcome {
        match self.oauth_callback_inner(ctx, code, state, provider_error).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "oauth callback failed");
                CallbackOutcome {
                    ok: false,
                    message: "The authorization could not be completed; see the audit log for details.".into(),
                }
            }
        }
    }

    async fn oauth_callback_inner(
        &self,
        ctx: &RequestCtx,
        code: Option<String>,
        state: Option<String>,
        provider_error: Option<String>,
    ) -> CoreResult<CallbackOutcome> {
        let state = state.unwrap_or_default();
        let ctx2 = ctx.clone();
        // 1. Consume the state, whatever happens next (single use).
        let st = state.clone();
        let claimed = self
            .inner
            .store
            .write(move |tx: &mut dyn Tx| -> CoreResult<Result<Claimed, &'static str>> {
                let sql = format!(
                    "SELECT s.credential_id, s.principal_id, s.authorized_as, s.code_verifier, s.redirect_uri, s.expires_at, s.used_at, c.org_id \
                     FROM oauth_states s JOIN credentials c ON c.id = s.credential_id WHERE s.state = $1{}",
                    tx.for_update()
                );
                let row = if st.is_empty() || st.len() > 200 { None } else { tx.query_opt(&sql, &[st.as_str().into()])? };
                let refusal = match &row {
                    None => Some("unknown_state"),
                    Some(r) if r.opt_int(6)?.is_some() => Some("replayed_state"),
                    Some(r) if r.int(5)? <= now_micros() => Some("expired_state"),
                    Some(_) => None,
                };
                let (org, who, target) = match &row {
                    Some(r) => (Some(r.text(7)?), Some(r.text(1)?), Some(r.text(0)?)),
                    None => (None, None, None),
                };
                if let Some(reason) = refusal {
                    let d = Draft {
                        action: Action::OauthCallback,
                        target_type: target.as_ref().map(|_| "credential"),
                        target_id: target,
                        org_id: org,
                        workspace_id: None,
                        outcome: Outcome::Denied,
                        details: json!({"reason": reason}),
                    };
                    audit::append(tx, &ctx2, &ActorRef::user(who), &d)?;
                    return Ok(Err(reason));
                }
                let Some(r) = row else { return Ok(Err("unknown_state")) };
                tx.execute("UPDATE oauth_states SET used_at = $1 WHERE state = $2", &[now_micros().into(), st.as_str().into()])?;
                Ok(Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)? + "\u{1}" + &r.text(4)?)))
            })
            .await?;
        let (cred_id, principal, authorized_as, verifier_and_redirect) = match claimed {
            Ok(v) => v,
            Err(reason) => {
                let message = match reason {
                    "replayed_state" => "This authorization link was already used. Start the authorization again.",
                    "expired_state" => "This authorization request expired. Start the authorization again.",
                    _ => "This authorization request is not known. Start the authorization again from credvault.",
                };
                return Ok(CallbackOutcome {
                    ok: false,
                    message: message.into(),
                });
            }
        };
        let (verifier, redirect_uri) = verifier_and_redirect
            .split_once('\u{1}')
            .map(|(a, b)| (zeroize::Zeroizing::new(a.to_owned()), b.to_owned()))
            .unwrap_or_default();
        let keyring = self.keyring()?.clone();
        let cid = cred_id.clone();
        let (c, fields) = self
            .inner
            .store
            .read(move |tx: &mut dyn Tx| -> CoreResult<(CredRow, Json)> {
                let c = load_cred(tx, &cid, false)?;
                let f = decrypt_version(tx, &keyring, &c.org_id, &c.id, c.current_version)?;
                Ok((c, f))
            })
            .await?;
        let mut fields = fields;
        let record =
            |outcome: Outcome, details: Json| c.draft(Action::OauthAuthorize).outcome(outcome).details(details);
        if let Some(err) = provider_error {
            let d = record(
                Outcome::Error,
                json!({"provider_error": err.chars().take(100).collect::<String>()}),
            );
            self.record_as_user(ctx, principal, d).await?;
            credvault_domain::secret::zeroize_json(&mut fields);
            return Ok(CallbackOutcome {
                ok: false,
                message: "The provider did not grant access.".into(),
            });
        }
        let code = zeroize::Zeroizing::new(code.unwrap_or_default());
        let exchanged = token_request(
            &crate::destinations::policy_for(&self.inner.config.egress, &c, &fields),
            str_field(&fields, "token_url"),
            client_auth(&fields),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        let keyring = self.keyring()?.clone();
        let (ctx3, p) = (ctx.clone(), principal.clone());
        match exchanged {
            Ok(tokens) => {
                let now = now_micros();
                store_tokens(&mut fields, &tokens, now);
                if let Json::Object(m) = &mut fields {
                    m.insert("authorized_by".into(), Json::String(authorized_as.clone()));
                    m.insert("authorized_at".into(), Json::String(to_rfc3339(now)));
                }
                let d = record(
                    Outcome::Success,
                    json!({"authorized_by": authorized_as, "refresh_token_issued": tokens.refresh_token.is_some()}),
                );
                let name = c.name.clone();
                let read_version = c.current_version;
                let stored = self
                    .inner
                    .store
                    .write(move |tx| {
                        let c = load_cred(tx, &c.id, true)?;
                        if c.current_version != read_version {
                            // Someone entered a new version while the provider answered: these
                            // tokens belong with the fields of the old one. Keep the new one.
                            credvault_domain::secret::zeroize_json(&mut fields);
                            let mut d = d;
                            d.outcome = Outcome::Error;
                            d.details = json!({"reason": "version_changed", "read_version": read_version, "current_version": c.current_version});
                            audit::append(tx, &ctx3, &ActorRef::user(Some(p.clone())), &d)?;
                            return Ok::<_, CoreError>(false);
                        }
                        let version = replace_version_internal(tx, &keyring, &c, fields, &p)?;
                        tx.execute(
                            "UPDATE credentials SET oauth_health = 'healthy', oauth_health_reason = NULL, oauth_authorized_by = $1, oauth_refreshed_at = $2 WHERE id = $3",
                            &[authorized_as.as_str().into(), now.into(), c.id.as_str().into()],
                        )?;
                        let mut d = d;
                        d.details["version"] = version.into();
                        audit::append(tx, &ctx3, &ActorRef::user(Some(p.clone())), &d)?;
                        Ok::<_, CoreError>(true)
                    })
                    .await?;
                if !stored {
                    return Ok(CallbackOutcome {
                        ok: false,
                        message: format!(
                            "The credential {name} got a new version while you were authorizing, so this authorization was not stored. Start the authorization again."
                        ),
                    });
                }
                Ok(CallbackOutcome {
                    ok: true,
                    message: format!("Access granted: the credential {name} is authorized. You can close this window."),
                })
            }
            Err(e) => {
                credvault_domain::secret::zeroize_json(&mut fields);
                let d = record(Outcome::Error, json!({"error": e.to_string()}));
                self.record_as_user(ctx, principal, d).await?;
                Ok(CallbackOutcome {
                    ok: false,
                    message: "The provider did not accept the authorization code. Start the authorization again."
                        .into(),
                })
            }
        }
    }

    fn refresh_lock(&self, cred: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = match self.inner.refresh_locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() > 10_000 {
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(cred.to_owned()).or_default().clone()
    }
}
