//! Refreshing access tokens before they expire: one node at a time per credential (a lease in
//! the store), rotated refresh tokens kept, grant health and its alerts.

use super::*;

impl Service {
    /// The credential, its grant health, when its tokens were last stored (consent or refresh)
    /// and its current version's fields.
    pub(super) async fn oauth_state(
        &self,
        cred_id: &str,
    ) -> CoreResult<(CredRow, Option<String>, Option<i64>, ZeroJson)> {
        let keyring = self.keyring()?.clone();
        let id = cred_id.to_owned();
        self.inner
            .store
            .read(
                move |tx: &mut dyn Tx| -> CoreResult<(CredRow, Option<String>, Option<i64>, ZeroJson)> {
                    let c = load_cred(tx, &id, false)?;
                    let f = ZeroJson(decrypt_version(tx, &keyring, &c.org_id, &c.id, c.current_version)?);
                    let (health, refreshed_at) = match tx.query_opt(
                        "SELECT oauth_health, oauth_refreshed_at FROM credentials WHERE id = $1",
                        &[id.as_str().into()],
                    )? {
                        Some(r) => (r.opt_text(0)?, r.opt_int(1)?),
                        None => (None, None),
                    };
                    Ok((c, health, refreshed_at, f))
                },
            )
            .await
    }

    pub(super) async fn release_refresh_lease(&self, cred_id: &str, node: &str) {
        let (id, nd) = (cred_id.to_owned(), node.to_owned());
        let r = self
            .inner
            .store
            .write(move |tx: &mut dyn Tx| -> CoreResult<()> {
                tx.execute(
                    "DELETE FROM oauth_leases WHERE credential_id = $1 AND owner = $2",
                    &[id.as_str().into(), nd.as_str().into()],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(credential = %cred_id, error = %e, "could not release the OAuth refresh lease (it expires by itself)");
        }
    }

    /// Makes sure an OAuth credential's current version holds a fresh access token, refreshing
    /// it (once, across concurrent callers and nodes) if not. Failures are recorded as grant
    /// health; the caller decides what a still-stale token means.
    ///
    /// `since` is when the caller's request arrived: tokens stored at or after it (by a refresh
    /// on this node or another, or a new consent) are taken as they are, whatever the skew says.
    /// So requests that arrived while a refresh was under way share its token, even when they
    /// read the stale one only after it finished (a slow store under a burst), and a skew longer
    /// than the provider's token lifetime does not refresh again and again; a request that
    /// arrives after a refresh finished may refresh again (the skew says the token is stale).
    pub(crate) async fn ensure_fresh_token(&self, cred_id: &str, since: i64) -> CoreResult<()> {
        self.refresh_token(cred_id, since, false).await
    }

    /// The scheduler's keepalive: refreshes an idle grant whatever its access token's expiry
    /// (unless a refresh stored tokens after `since`), so a refresh token that dies when idle
    /// is used in time. Failures become grant health and alerts, as at resolve.
    pub(crate) async fn keep_grant_alive(&self, cred_id: &str, since: i64) -> CoreResult<()> {
        self.refresh_token(cred_id, since, true).await
    }

    async fn refresh_token(&self, cred_id: &str, since: i64, keepalive: bool) -> CoreResult<()> {
        let lock = self.refresh_lock(cred_id);
        let _guard = lock.lock().await;
        let skew = self.inner.config.oauth.refresh_skew_secs;
        let node = node_id();
        for _ in 0..150 {
            // Cross-node single flight: take the lease first, then read what to refresh with,
            // so the refresh token read is the one the previous lease holder stored.
            let (id, nd) = (cred_id.to_owned(), node.clone());
            // A lease owned by `backoff:N` marks the N-th transient failure in a row: nobody
            // refreshes before it runs out (callers fail fast with `oauth_refresh_failing`).
            let (got, failures, backing_off) = self
                .inner
                .store
                .write(move |tx: &mut dyn Tx| -> CoreResult<(bool, u32, bool)> {
                    let now = now_micros();
                    tx.execute("INSERT INTO oauth_leases (credential_id, owner, until) VALUES ($1, '', 0) ON CONFLICT (credential_id) DO NOTHING", &[id.as_str().into()])?;
                    let sql = format!("SELECT owner, until FROM oauth_leases WHERE credential_id = $1{}", tx.for_update());
                    let (owner, until) = match tx.query_opt(&sql, &[id.as_str().into()])? {
                        Some(r) => (r.text(0)?, r.int(1)?),
                        None => (String::new(), 0),
                    };
                    let failures = owner.strip_prefix("backoff:").and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
                    let n = tx.execute(
                        "UPDATE oauth_leases SET owner = $1, until = $2 WHERE credential_id = $3 AND (owner = $1 OR until < $4)",
                        &[nd.as_str().into(), (now + 30_000_000).into(), id.as_str().into(), now.into()],
                    )?;
                    Ok((n > 0, failures, failures > 0 && until >= now))
                })
                .await?;
            if backing_off {
                return Ok(());
            }
            let (c, health, refreshed_at, mut state) = self.oauth_state(cred_id).await?;
            let mut fields = std::mem::take(&mut state.0);
            let changed = refreshed_at.is_some_and(|t| t >= since);
            let variant = c.variant.clone().unwrap_or_default();
            let done = changed
                || (!keepalive && token_fresh(&fields, skew))
                || health.as_deref() == Some("needs_reauthorization")
                // Never consented: resolve says so.
                || (variant == "authorization_code" && str_field(&fields, "refresh_token").is_empty());
            if done || !got {
                credvault_domain::secret::zeroize_json(&mut fields);
                if got {
                    self.release_refresh_lease(cred_id, &node).await;
                }
                if done {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let form_refresh;
            let scopes = fields
                .get("scopes")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            let rt = zeroize::Zeroizing::new(str_field(&fields, "refresh_token").to_owned());
            let form: Vec<(&str, &str)> = if variant == "client_credentials" {
                form_refresh = vec![("grant_type", "client_credentials"), ("scope", scopes.as_str())];
                form_refresh
                    .into_iter()
                    .filter(|(k, v)| *k != "scope" || !v.is_empty())
                    .collect()
            } else {
                vec![("grant_type", "refresh_token"), ("refresh_token", rt.as_str())]
            };
            // The version these fields came from: the new tokens go back into exactly it
            // (a rotation that made another version current meanwhile is not undone).
            let read_version = c.current_version;
            let result = token_request(
                &crate::destinations::policy_for(&self.inner.config.egress, &c, &fields),
                str_field(&fields, "token_url"),
                client_auth(&fields),
                &form,
            )
            .await;
            let keyring = self.keyring()?.clone();
            let this = self.clone();
            let ctx = RequestCtx {
                request_id: String::new(),
                source_ip: None,
                user_agent: Some("credvault oauth refresh".into()),
                received_at: 0,
            };
            let id = cred_id.to_owned();
            self.inner
                .store
                .write(move |tx| {
                    let c = load_cred(tx, &id, true)?;
                    let now = now_micros();
                    let draft = |outcome, details| c.draft(Action::OauthRefresh).outcome(outcome).details(details);
                    let alert = |action: Action, reason: &str| c.draft(action).details(json!({"reason": reason}));
                    let transient = matches!(&result, Err(e) if !matches!(e, OAuthError::InvalidGrant(_) | OAuthError::InvalidClient(_)));
                    match result {
                        Ok(_) if c.current_version != read_version => {
                            // A new version became current while the token endpoint answered:
                            // these tokens came from the old one's grant; keep the new version.
                            credvault_domain::secret::zeroize_json(&mut fields);
                            audit::append(tx, &ctx, &ActorRef::system(), &draft(Outcome::Error, json!({
                                "discarded": "a new version became current during the refresh",
                                "refreshed_version": read_version, "current_version": c.current_version,
                            })))?;
                        }
                        Ok(tokens) => {
                            let rotated = tokens.refresh_token.is_some();
                            store_tokens(&mut fields, &tokens, now);
                            reseal_current(tx, &keyring, &c, read_version, fields)?;
                            tx.execute(
                                "UPDATE credentials SET oauth_health = 'healthy', oauth_health_reason = NULL, oauth_refreshed_at = $1 WHERE id = $2",
                                &[now.into(), c.id.as_str().into()],
                            )?;
                            let trigger = if keepalive { "keepalive" } else { "use" };
                            audit::append(tx, &ctx, &ActorRef::system(), &draft(Outcome::Success, json!({"refresh_token_rotated": rotated, "expires_in": tokens.expires_in, "trigger": trigger})))?;
                        }
                        Err(e) => {
                            credvault_domain::secret::zeroize_json(&mut fields);
                            let (health, alert_action) = match &e {
                                OAuthError::InvalidGrant(_) | OAuthError::InvalidClient(_) => ("needs_reauthorization", Action::AlertOauthNeedsReauthorization),
                                _ => ("refresh_failing", Action::AlertOauthRefreshFailing),
                            };
                            let reason = e.to_string();
                            let changed = set_health(tx, &c.id, health, Some(&reason))?;
                            audit::append(tx, &ctx, &ActorRef::system(), &draft(Outcome::Error, json!({"error": reason, "health": health})))?;
                            if changed {
                                audit::append(tx, &ctx, &ActorRef::system(), &alert(alert_action, &reason))?;
                            }
                        }
                    }
                    if transient {
                        // Exponential backoff with jitter: 2, 4, 8 … up to 300 s.
                        let n = failures.saturating_add(1).min(16);
                        let base = (1i64 << n.min(8)).min(300) * 1_000_000;
                        let jitter = i64::from(u16::from_le_bytes(credvault_crypto::random_bytes::<2>())) * 15;
                        tx.execute(
                            "UPDATE oauth_leases SET owner = $1, until = $2 WHERE credential_id = $3",
                            &[format!("backoff:{n}").as_str().into(), (now + base + jitter).into(), c.id.as_str().into()],
                        )?;
                    } else {
                        tx.execute("DELETE FROM oauth_leases WHERE credential_id = $1", &[c.id.as_str().into()])?;
                    }
                    let _ = &this;
                    Ok::<_, CoreError>(())
                })
                .await?;
            return Ok(());
        }
        Err(CoreError::Unavailable {
            code: Code::OauthRefreshBusy,
            message: "another node is refreshing this token; retry shortly".into(),
        })
    }
}
