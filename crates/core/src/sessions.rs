//! People signing in to the web UI: passwords (Argon2id), lock-out with back-off, and browser
//! sessions. A session is an opaque 256-bit cookie value; the store keeps only its SHA-256,
//! the principal, a per-session CSRF token, and its idle and absolute expiry. A valid session
//! yields the same [`Actor`] a bearer token would, so the UI goes through exactly the same
//! authorization as the API.

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::sync::Arc;

use zeroize::Zeroizing;

use credvault_crypto::{ct_eq, hash_password, hash_token, random_bytes, verify_password};
use credvault_domain::roles::Permission;
use credvault_domain::time::now_micros;
use credvault_domain::{OrgId, PrincipalId, PrincipalKind, TokenId};
use credvault_store::Tx;

use crate::Service;
use crate::audit::{self, ActorRef, Draft, Outcome};
use crate::auth::{Scope, load_bindings};
use crate::context::{Actor, RequestCtx};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode, Ops, Plan};
use crate::tenancy::is_instance_admin;

/// Prefix of session cookie values.
pub const SESSION_PREFIX: &str = "cvs_";
/// A session ends after this long without a request.
pub const SESSION_IDLE_SECS: i64 = 30 * 60;
/// A session ends this long after sign-in, however active.
pub const SESSION_MAX_SECS: i64 = 12 * 3600;
/// Consecutive failures before an account is locked.
pub const LOCKOUT_AFTER: i64 = 5;
const LOCK_BASE_SECS: i64 = 30;
const LOCK_MAX_SECS: i64 = 15 * 60;
/// Prefix of device cookie values (a browser that signed in before).
pub const DEVICE_PREFIX: &str = "cvd_";
/// How long a device cookie is honoured after the sign-in that issued it.
pub const DEVICE_MAX_SECS: i64 = 90 * 24 * 3600;
/// How often `last_seen` is written back (an idle check needs no finer grain).
const TOUCH_EVERY_US: i64 = 30 * 1_000_000;
const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 1024;

/// Password hashes running at once, server-wide. Each costs 19 MiB and tens of milliseconds;
/// unauthenticated sign-in attempts must not be able to exhaust memory or starve resolves.
static HASH_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// How long a sign-in waits for a hashing slot before it is told to retry.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs one Argon2id computation under the server-wide limit.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> CoreResult<T> {
    let busy = || CoreError::Unavailable {
        code: Code::Busy,
        message: "too many sign-ins at once; retry in a few seconds".into(),
    };
    let _permit = tokio::time::timeout(HASH_WAIT, HASH_SLOTS.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| CoreError::Internal("password hashing stopped".into()))
}

/// A new browser session. The cookie value is shown to the browser once and never stored.
pub struct NewSession {
    /// The cookie value.
    pub cookie: Zeroizing<String>,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// A new device cookie value, when the browser did not present a valid one of this person.
    pub device: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSession { cookie: <redacted>, device: <redacted>, .. }")
    }
}

/// An authenticated browser session. `Debug` leaves the CSRF token out.
#[derive(Clone)]
pub struct SessionActor {
    /// Who is signed in.
    pub actor: Arc<Actor>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The session's ID (not the cookie).
    pub session_id: String,
    /// The name of the person's organization (as in an `organization/name` sign-in).
    pub org_name: String,
}

impl std::fmt::Debug for SessionActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionActor")
            .field("actor", &self.actor.principal_id)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl SessionActor {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        ct_eq(self.csrf.as_bytes(), presented.as_bytes())
    }
}

/// Seconds an account stays locked after `failed` consecutive failures.
pub fn lock_secs(failed: i64) -> Option<i64> {
    if failed < LOCKOUT_AFTER {
        return None;
    }
    let exp = (failed - LOCKOUT_AFTER).min(10) as u32;
    Some((LOCK_BASE_SECS << exp).min(LOCK_MAX_SECS))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Login {
    principal_id: String,
    org_id: String,
    kind: String,
    disabled: bool,
    phc: String,
    failed: i64,
    locked_until: Option<i64>,
    /// The attempt was counted against this device (the SHA-256 of its cookie), not the account.
    device: Option<Vec<u8>>,
}

/// A new opaque cookie value with `prefix`, and its SHA-256 (what the store keeps).
fn new_cookie(prefix: &str) -> (Zeroizing<String>, Vec<u8>) {
    let raw: Zeroizing<[u8; 32]> = Zeroizing::new(random_bytes());
    let mut cookie = Zeroizing::new(String::with_capacity(prefix.len() + 64));
    cookie.push_str(prefix);
    cookie.push_str(&hex(&raw[..]));
    let hash = hash_token(&cookie).to_vec();
    (cookie, hash)
}

/// A hash no password matches (same parameters as real ones), verified for unknown logins so
/// that an unknown name costs the same time as a wrong password.
fn dummy_phc() -> String {
    format!(
        "argon2id$v=19$m={},t={},p={}${}${}",
        credvault_crypto::PASSWORD_M_KIB,
        credvault_crypto::PASSWORD_T,
        credvault_crypto::PASSWORD_P,
        "00".repeat(16),
        "00".repeat(32)
    )
}

impl Service {
    /// Sets a user's sign-in password. Organization admins may set anyone's in their
    /// organization (never the instance admin's, unless they are one); a user changing their
    /// own must give the current password. Existing sessions of that user end.
    pub async fn set_password(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        principal_id: &str,
        password: Zeroizing<String>,
        current: Option<Zeroizing<String>>,
    ) -> CoreResult<()> {
        let n = password.chars().count();
        if n < MIN_PASSWORD || password.len() > MAX_PASSWORD {
            return Err(CoreError::invalid(
                "password",
                Code::WeakPassword,
                format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
            ));
        }
        // Authorize before any hashing, so nobody can make the server burn CPU for free.
        let old_phc = self
            .operate(ctx, actor, Mode::Read, password_plan(principal_id), |ops, t| {
                password_target(ops, &t)?;
                Ok(t.phc)
            })
            .await?;
        if a_is_self(actor, principal_id) {
            let ok = match (old_phc, current) {
                (Some(phc), Some(cur)) => hashing(move || verify_password(cur.as_bytes(), &phc)).await?,
                _ => false,
            };
            if !ok {
                return Err(CoreError::invalid(
                    "current_password",
                    Code::WrongPassword,
                    "give your current password to change it",
                ));
            }
        }
        let phc = hashing(move || hash_password(password.as_bytes()))
            .await?
            .map_err(|_| CoreError::Internal("password hashing failed".into()))?;
        let id = principal_id.to_owned();
        self.operate(ctx, actor, Mode::Write, password_plan(principal_id), move |ops, t| {
            password_target(ops, &t)?;
            let org = t.org;
            let tx = ops.tx();
            let Some(r) = tx.query_opt("SELECT name FROM principals WHERE id = $1", &[id.as_str().into()])? else {
                return Err(CoreError::NotFound { what: "principal" });
            };
            let login = r.text(0)?.to_lowercase();
            // Names are unique per organization; only a case variant can collide.
            if tx
                .query_opt(
                "SELECT pp.principal_id FROM principal_passwords pp JOIN principals p ON p.id = pp.principal_id \
                 WHERE pp.login = $1 AND p.org_id = $2 AND pp.principal_id <> $3",
                &[login.as_str().into(), org.as_str().into(), id.as_str().into()],
                )?
                .is_some()
            {
                return Err(CoreError::conflict(
                    Code::LoginTaken,
                    "another person of this organization signs in with this name (it differs only in case); rename one of them first",
                ));
            }
            let now = now_micros();
            tx.execute(
                "DELETE FROM principal_passwords WHERE principal_id = $1",
                &[id.as_str().into()],
            )?;
            tx.execute(
                "INSERT INTO principal_passwords (principal_id, login, phc, failed, locked_until, updated_at) \
                 VALUES ($1, $2, $3, 0, NULL, $4)",
                &[id.as_str().into(), login.into(), phc.into(), now.into()],
            )?;
            tx.execute(
                "UPDATE ui_sessions SET revoked_at = $1 WHERE principal_id = $2 AND revoked_at IS NULL",
                &[now.into(), id.as_str().into()],
            )?;
            // Device cookies issued under the old password (and their locks) end too.
            tx.execute("DELETE FROM ui_devices WHERE principal_id = $1", &[id.as_str().into()])?;
            ops.record(ops.event())?;
            Ok(())
        })
        .await
    }

    /// Signs a person in. Every failure is audited, counted by the spike detectors and
    /// answered alike ([`CoreError::Unauthenticated`]), whether the name is unknown, the
    /// password wrong or the account locked: a guesser learns nothing about which.
    ///
    /// The attempt is counted, and the lock checked and (from the fifth failure on) set,
    /// in one write *before* the password is verified, so guesses sent in parallel each
    /// count: at most [`LOCKOUT_AFTER`] can be in flight before the account locks.
    ///
    /// `device` is the browser's device cookie, issued by an earlier successful sign-in of
    /// the same person. With a valid one the attempt is counted (and locked) on that device
    /// instead of the account, so an account that strangers locked by guessing stays usable
    /// from its owner's browser; the strangers' lock stays in place.
    pub async fn sign_in(
        &self,
        ctx: &RequestCtx,
        login: &str,
        password: Zeroizing<String>,
        device: Option<&str>,
    ) -> CoreResult<NewSession> {
        let login: String = login.trim().to_lowercase().chars().take(256).collect();
        let l2 = login.clone();
        let now = now_micros();
        let device_hash = device
            .filter(|d| d.starts_with(DEVICE_PREFIX) && d.len() <= 100)
            .map(|d| hash_token(d).to_vec());
        let attempt = self
            .inner
            .store
            .write(move |tx: &mut dyn Tx| -> CoreResult<(Option<(Login, bool)>, bool)> {
                // The rows whose counters this attempt changes are locked (PostgreSQL runs at
                // READ COMMITTED), so parallel guesses cannot overwrite each other's count.
                let lock_pp = if tx.engine() == credvault_store::Engine::Postgres { " FOR UPDATE OF pp" } else { "" };
                // `organization/name`, or a bare name.
                let select = "SELECT pp.principal_id, p.org_id, p.kind, p.disabled, pp.phc, pp.failed, pp.locked_until \
                     FROM principal_passwords pp JOIN principals p ON p.id = pp.principal_id";
                let rows = match l2.split_once('/') {
                    Some((org, name)) => tx.query(
                        &format!(
                            "{select} JOIN orgs o ON o.id = p.org_id WHERE pp.login = $1 AND lower(o.name) = $2 \
                             ORDER BY pp.principal_id LIMIT 16{lock_pp}"
                        ),
                        &[name.into(), org.into()],
                    )?,
                    None => tx.query(
                        &format!("{select} WHERE pp.login = $1 ORDER BY pp.principal_id LIMIT 16{lock_pp}"),
                        &[l2.as_str().into()],
                    )?,
                };
                // This browser's device cookie, if it is one: it also settles a name that
                // several organizations use.
                let known = match &device_hash {
                    Some(h) => tx.query_opt(
                        &format!(
                            "SELECT principal_id, failed, locked_until FROM ui_devices WHERE hash = $1 AND expires_at > $2{}",
                            tx.for_update()
                        ),
                        &[h.clone().into(), now.into()],
                    )?,
                    None => None,
                };
                let device_of = match &known {
                    Some(d) => Some(d.text(0)?),
                    None => None,
                };
                let r = match rows.as_slice() {
                    [] => return Ok((None, false)),
                    [r] => r,
                    many => {
                        let mut mine = None;
                        for r in many {
                            if device_of.as_deref() == Some(r.text(0)?.as_str()) {
                                mine = Some(r);
                            }
                        }
                        match mine {
                            Some(r) => r,
                            None => return Ok((None, true)),
                        }
                    }
                };
                let mut f = Login {
                    principal_id: r.text(0)?,
                    org_id: r.text(1)?,
                    kind: r.text(2)?,
                    disabled: r.bool(3)?,
                    phc: r.text(4)?,
                    failed: r.int(5)?,
                    locked_until: r.opt_int(6)?,
                    device: None,
                };
                if let (Some(d), Some(h)) = (&known, &device_hash)
                    && device_of.as_deref() == Some(f.principal_id.as_str())
                {
                    f.device = Some(h.clone());
                    f.failed = d.int(1)?;
                    f.locked_until = d.opt_int(2)?;
                    if f.locked_until.is_some_and(|t| t > now) {
                        return Ok((Some((f, true)), false));
                    }
                    f.failed += 1;
                    let lock = lock_secs(f.failed).map(|s| now + s * 1_000_000);
                    tx.execute(
                        "UPDATE ui_devices SET failed = $1, locked_until = $2 WHERE hash = $3",
                        &[f.failed.into(), lock.into(), h.clone().into()],
                    )?;
                    return Ok((Some((f, false)), false));
                }
                if f.locked_until.is_some_and(|t| t > now) {
                    return Ok((Some((f, true)), false));
                }
                f.failed += 1;
                let lock = lock_secs(f.failed).map(|s| now + s * 1_000_000);
                tx.execute(
                    "UPDATE principal_passwords SET failed = $1, locked_until = $2 WHERE principal_id = $3",
                    &[f.failed.into(), lock.into(), f.principal_id.as_str().into()],
                )?;
                Ok((Some((f, false)), false))
            })
            .await?;
        let (attempt, ambiguous) = attempt;
        let phc = match &attempt {
            Some((f, false)) => f.phc.clone(),
            _ => dummy_phc(),
        };
        let pw_ok = hashing(move || verify_password(password.as_bytes(), &phc)).await?;
        let f = match attempt {
            None => {
                let reason = if ambiguous { "ambiguous_login" } else { "unknown_login" };
                self.sign_in_failed(ctx, None, reason, &login).await?;
                return Err(CoreError::Unauthenticated);
            }
            Some((f, true)) => {
                self.sign_in_failed(ctx, Some(&f), "locked_out", &login).await?;
                return Err(CoreError::Unauthenticated);
            }
            Some((f, false)) => f,
        };
        if !pw_ok {
            self.sign_in_failed(ctx, Some(&f), "bad_password", &login).await?;
            return Err(CoreError::Unauthenticated);
        }
        if f.disabled || f.kind != "user" {
            self.sign_in_failed(ctx, Some(&f), "principal_disabled", &login).await?;
            return Err(CoreError::Unauthenticated);
        }
        let (cookie, hash) = new_cookie(SESSION_PREFIX);
        // A browser without a valid device cookie of this person gets one.
        let (device, device_hash) = match &f.device {
            Some(_) => (None, None),
            None => {
                let (c, h) = new_cookie(DEVICE_PREFIX);
                (Some(c), Some(h))
            }
        };
        let csrf = hex(&random_bytes::<32>());
        let session_id = format!("ses_{}", hex(&random_bytes::<12>()));
        let (ctx2, csrf2) = (ctx.clone(), csrf.clone());
        self.inner
            .store
            .write(move |tx| {
                // A sign-in from a known device clears that device's count only: the account's
                // lock, set by someone else's guesses, stays.
                match &f.device {
                    Some(h) => tx.execute(
                        "UPDATE ui_devices SET failed = 0, locked_until = NULL WHERE hash = $1",
                        &[h.clone().into()],
                    )?,
                    None => tx.execute(
                        "UPDATE principal_passwords SET failed = 0, locked_until = NULL WHERE principal_id = $1",
                        &[f.principal_id.as_str().into()],
                    )?,
                };
                if let Some(h) = &device_hash {
                    tx.execute(
                        "INSERT INTO ui_devices (hash, principal_id, failed, locked_until, created_at, expires_at) \
                         VALUES ($1, $2, 0, NULL, $3, $4)",
                        &[
                            h.clone().into(),
                            f.principal_id.as_str().into(),
                            now.into(),
                            (now + DEVICE_MAX_SECS * 1_000_000).into(),
                        ],
                    )?;
                }
                tx.execute(
                    "INSERT INTO ui_sessions (hash, id, principal_id, csrf, created_at, last_seen, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6)",
                    &[
                        hash.to_vec().into(),
                        session_id.as_str().into(),
                        f.principal_id.as_str().into(),
                        csrf2.into(),
                        now.into(),
                        (now + SESSION_MAX_SECS * 1_000_000).into(),
                    ],
                )?;
                let who = ActorRef {
                    id: Some(f.principal_id.clone()),
                    kind: "user",
                };
                let d = Draft::new(Action::AuthSignIn, "session", session_id.as_str(), f.org_id.as_str());
                audit::append(tx, &ctx2, &who, &d)?;
                Ok::<_, CoreError>(())
            })
            .await?;
        Ok(NewSession { cookie, csrf, device })
    }

    async fn sign_in_failed(
        &self,
        ctx: &RequestCtx,
        f: Option<&Login>,
        reason: &'static str,
        login: &str,
    ) -> CoreResult<()> {
        let mut details = serde_json::json!({
            "reason": reason, "via": "password",
            "counted_on": if f.is_some_and(|f| f.device.is_some()) { "device" } else { "account" },
        });
        let (who, org, pid) = match f {
            Some(f) => (
                ActorRef {
                    id: Some(f.principal_id.clone()),
                    kind: if f.kind == "user" { "user" } else { "service_account" },
                },
                Some(f.org_id.clone()),
                Some(f.principal_id.clone()),
            ),
            None => {
                if let serde_json::Value::Object(m) = &mut details {
                    m.insert("login_fingerprint".into(), hex(&hash_token(login)[..8]).into());
                }
                (ActorRef::anonymous(), None, None)
            }
        };
        let lock = match (reason, f) {
            ("bad_password", Some(f)) => lock_secs(f.failed),
            _ => None,
        };
        if let (serde_json::Value::Object(m), Some(s)) = (&mut details, lock) {
            m.insert("locked_for_secs".into(), s.into());
        }
        let draft = Draft {
            action: Action::AuthFailure,
            target_type: pid.as_ref().map(|_| "principal"),
            target_id: pid.clone(),
            org_id: org.clone(),
            workspace_id: None,
            outcome: Outcome::Denied,
            details,
        };
        let ip = ctx.source_ip.clone().unwrap_or_else(|| "unknown".into());
        let mut alerts = Vec::new();
        alerts.extend(self.alert(
            crate::alerts::Signal::AuthFailureIp,
            &ip,
            org.as_deref(),
            "source_ip",
            &ip,
        ));
        if let Some(p) = &pid {
            alerts.extend(self.alert(
                crate::alerts::Signal::AuthFailurePrincipal,
                p,
                org.as_deref(),
                "principal",
                p,
            ));
        }
        let ctx = ctx.clone();
        self.inner
            .store
            .write(move |tx| crate::append_all(tx, &ctx, &who, &draft, alerts))
            .await
    }

    /// The actor behind a session cookie. Unknown, ended, idle-expired and revoked sessions,
    /// and sessions of disabled principals, are refused (and audited) alike.
    pub async fn session_actor(&self, cookie: &str, ctx: &RequestCtx) -> CoreResult<SessionActor> {
        if !cookie.starts_with(SESSION_PREFIX) || cookie.len() > 100 {
            return self.session_refused(ctx, None, "unknown_session").await;
        }
        let hash = hash_token(cookie);
        type Found = (Vec<String>, bool, bool, Vec<u8>, i64, i64, Option<i64>);
        let found = self
            .inner
            .store
            .read(move |tx: &mut dyn Tx| {
                let Some(r) = tx.query_opt(
                    "SELECT s.id, s.principal_id, s.csrf, p.org_id, p.kind, p.name, o.name, p.instance_admin, p.disabled, \
                     s.hash, s.last_seen, s.expires_at, s.revoked_at \
                     FROM ui_sessions s JOIN principals p ON p.id = s.principal_id JOIN orgs o ON o.id = p.org_id \
                     WHERE s.hash = $1",
                    &[hash.to_vec().into()],
                )?
                else {
                    return Ok::<_, CoreError>(None);
                };
                let texts = (0..7).map(|i| r.text(i)).collect::<Result<Vec<_>, _>>()?;
                let bindings = load_bindings(tx, &texts[1])?;
                let f: Found = (
                    texts,
                    r.bool(7)?,
                    r.bool(8)?,
                    r.bytes(9)?,
                    r.int(10)?,
                    r.int(11)?,
                    r.opt_int(12)?,
                );
                Ok(Some((f, bindings)))
            })
            .await?;
        let Some(((t, instance_admin, disabled, stored_hash, last_seen, expires_at, revoked_at), bindings)) = found
        else {
            return self.session_refused(ctx, None, "unknown_session").await;
        };
        let now = now_micros();
        let reason = if !ct_eq(&stored_hash, &hash) {
            Some("unknown_session")
        } else if revoked_at.is_some() {
            Some("session_ended")
        } else if expires_at <= now || last_seen + SESSION_IDLE_SECS * 1_000_000 <= now {
            Some("session_expired")
        } else if disabled {
            Some("principal_disabled")
        } else {
            None
        };
        if let Some(reason) = reason {
            return self.session_refused(ctx, Some((&t[1], &t[3])), reason).await;
        }
        let [session_id, principal_id, csrf, org_id, kind, name, org_name] =
            <[String; 7]>::try_from(t).map_err(|_| CoreError::Internal("session row shape".into()))?;
        if now - last_seen > TOUCH_EVERY_US {
            let sid = session_id.clone();
            self.inner
                .store
                .write(move |tx| {
                    tx.execute(
                        "UPDATE ui_sessions SET last_seen = $1 WHERE id = $2",
                        &[now.into(), sid.into()],
                    )?;
                    Ok::<_, CoreError>(())
                })
                .await?;
        }
        let actor = Arc::new(Actor {
            principal_id: PrincipalId::from_trusted(principal_id),
            kind: PrincipalKind::parse(&kind).unwrap_or(PrincipalKind::User),
            name,
            org_id: OrgId::from_trusted(org_id),
            instance_admin,
            token_id: TokenId::from_trusted(session_id.clone()),
            bindings,
        });
        Ok(SessionActor {
            actor,
            csrf,
            session_id,
            org_name,
        })
    }

    async fn session_refused<T>(
        &self,
        ctx: &RequestCtx,
        who: Option<(&str, &str)>,
        reason: &'static str,
    ) -> CoreResult<T> {
        let draft = Draft {
            action: Action::AuthFailure,
            target_type: None,
            target_id: None,
            org_id: who.map(|w| w.1.to_owned()),
            workspace_id: None,
            outcome: Outcome::Denied,
            details: serde_json::json!({ "reason": reason, "via": "session" }),
        };
        let actor = match who {
            Some((p, _)) => ActorRef {
                id: Some(p.to_owned()),
                kind: "user",
            },
            None => ActorRef::anonymous(),
        };
        let ip = ctx.source_ip.clone().unwrap_or_else(|| "unknown".into());
        let alert = if reason == "unknown_session" {
            self.alert(crate::alerts::Signal::AuthFailureIp, &ip, None, "source_ip", &ip)
        } else {
            None
        };
        let ctx = ctx.clone();
        self.inner
            .store
            .write(move |tx| crate::append_all(tx, &ctx, &actor, &draft, alert))
            .await?;
        Err(CoreError::Unauthenticated)
    }

    /// Records a refused form of a signed-in session (a missing or wrong CSRF token), in the
    /// session's organization, counted by the per-principal spike detector.
    pub async fn record_csrf_failure(&self, ctx: &RequestCtx, session: &SessionActor) -> CoreResult<()> {
        let a = session.actor.clone();
        let draft = Draft {
            action: Action::AuthFailure,
            target_type: Some("session"),
            target_id: Some(session.session_id.clone()),
            org_id: Some(a.org_id.to_string()),
            workspace_id: None,
            outcome: Outcome::Denied,
            details: serde_json::json!({ "reason": "csrf_mismatch", "via": "session" }),
        };
        let alert = self.alert(
            crate::alerts::Signal::AuthFailurePrincipal,
            a.principal_id.as_str(),
            Some(a.org_id.as_str()),
            "principal",
            a.principal_id.as_str(),
        );
        let ctx = ctx.clone();
        self.inner
            .store
            .write(move |tx| crate::append_all(tx, &ctx, &ActorRef::from(a.as_ref()), &draft, alert))
            .await
    }

    /// Ends a session (sign-out).
    pub async fn sign_out(&self, ctx: &RequestCtx, session: &SessionActor) -> CoreResult<()> {
        let (ctx, s) = (ctx.clone(), session.clone());
        self.inner
            .store
            .write(move |tx| {
                tx.execute(
                    "UPDATE ui_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                    &[now_micros().into(), s.session_id.as_str().into()],
                )?;
                let d = Draft::new(
                    Action::AuthSignOut,
                    "session",
                    s.session_id.as_str(),
                    s.actor.org_id.as_str(),
                );
                audit::append(tx, &ctx, &ActorRef::from(s.actor.as_ref()), &d)?;
                Ok::<_, CoreError>(())
            })
            .await
    }
}

fn a_is_self(actor: &Actor, principal_id: &str) -> bool {
    actor.principal_id.as_str() == principal_id
}

/// The principal whose password is set.
struct PasswordTarget {
    org: OrgId,
    kind: String,
    phc: Option<String>,
}

/// `prepare` of setting principal `id`'s password: organization admins, or the user itself.
fn password_plan(id: &str) -> impl FnOnce(&mut dyn Tx) -> CoreResult<Plan<PasswordTarget>> + Send + 'static {
    let id = id.to_owned();
    move |tx| {
        let Some(r) = tx.query_opt(
            "SELECT org_id, kind FROM principals WHERE id = $1",
            &[id.as_str().into()],
        )?
        else {
            return Err(CoreError::NotFound { what: "principal" });
        };
        let org = OrgId::from_trusted(r.text(0)?);
        let phc = tx
            .query_opt(
                "SELECT phc FROM principal_passwords WHERE principal_id = $1",
                &[id.as_str().into()],
            )?
            .map(|r| r.text(0))
            .transpose()?;
        let draft = Draft::new(Action::PrincipalPasswordSet, "principal", id.as_str(), org.as_str());
        let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "principal", draft).or_self(&id);
        let kind = r.text(1)?;
        Ok(Plan::new(PasswordTarget { org, kind, phc }, check))
    }
}

/// What setting a password needs beyond the check: an organization admin does not take over
/// the instance admin's account, and only users have passwords.
fn password_target(ops: &mut Ops<'_>, t: &PasswordTarget) -> CoreResult<()> {
    let (a, id) = (ops.actor().clone(), ops.event().target_id.unwrap_or_default());
    if !a_is_self(&a, &id) && !a.instance_admin && is_instance_admin(ops.tx(), &id)? {
        return Err(ops.forbid(Permission::OrgAdmin));
    }
    if t.kind != "user" {
        return Err(CoreError::invalid(
            "principal_id",
            Code::NotAUser,
            "only users sign in with a password; service accounts use tokens",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::lock_secs;

    #[test]
    fn lock_out_starts_at_the_fifth_failure_and_backs_off_to_fifteen_minutes() {
        assert_eq!(lock_secs(4), None);
        assert_eq!(lock_secs(5), Some(30));
        assert_eq!(lock_secs(6), Some(60));
        assert_eq!(lock_secs(7), Some(120));
        assert_eq!(lock_secs(20), Some(900));
        assert_eq!(lock_secs(i64::MAX), Some(900));
    }
}
