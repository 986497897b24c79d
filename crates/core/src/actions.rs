//! The audit actions: every `action` an event of the journal can carry, in one catalogue. A
//! [`Draft`](crate::audit::Draft) takes an [`Action`], never a string, so the journal holds no
//! action this list (and the OpenAPI document's `x-audit-actions`, built from it) does not name —
//! what a SIEM rule can match on.

credvault_domain::catalogue! {
    /// An audit action (see the module documentation).
    pub enum Action {
        AuthFailure = "auth.failure": "A request's authentication failed (the first of its address's window in full; the rest as one `coalesced` summary with a count).",
        AuthSignIn = "auth.sign_in": "A person signed in to the web UI (or failed to).",
        AuthSignOut = "auth.sign_out": "A person signed out of the web UI.",
        PrincipalPasswordSet = "principal.password_set": "A user's UI password was set or changed.",
        InstanceInit = "instance.init": "The instance was initialized (first start: the admin, the default organization and workspace).",
        OrgCreate = "org.create": "An organization was created.",
        OrgSettingsUpdate = "org.settings.update": "An organization's settings changed (details: the changed settings).",
        WorkspaceCreate = "workspace.create": "A workspace was created.",
        PrincipalCreate = "principal.create": "A user or service account was created.",
        RoleBindingCreate = "role_binding.create": "A role was granted in a scope.",
        RoleBindingDelete = "role_binding.delete": "A role grant was removed.",
        TokenCreate = "token.create": "An API token was issued (never the token itself).",
        TokenRevoke = "token.revoke": "An API token was revoked.",
        CredentialCreate = "credential.create": "A credential was created (details: its type, variant, scope; never a secret).",
        CredentialUpdate = "credential.update": "A credential's metadata changed (name, labels, description, expiry, rotation period, allowed destinations).",
        CredentialDestinationsAllow = "credential.destinations.allow": "A destination was added to a credential's allowed set on first use by someone who may change it.",
        AuditSinksRead = "audit.sinks.read": "An admin read the audit sinks' state (backlogs, errors, parked events).",
        AlertAuditDeadLetter = "alert.audit_dead_letter": "An audit sink refused an event for good; it was parked (details: sink, seq, error).",
        CredentialVersionCreate = "credential.version.create": "A new version was created, staged or current (details: version, state, the secret field names set, kept fields).",
        CredentialVersionPromote = "credential.version.promote": "A staged or previous version became current.",
        CredentialVersionRevoke = "credential.version.revoke": "A version was revoked (never resolvable again).",
        CredentialDisable = "credential.disable": "A credential was disabled (resolves refused).",
        CredentialEnable = "credential.enable": "A credential was enabled again.",
        CredentialDelete = "credential.delete": "A credential was soft-deleted (pending deletion).",
        CredentialRestore = "credential.restore": "A soft-deleted credential was restored.",
        CredentialReveal = "credential.reveal": "A person read a credential's plaintext (the second plaintext door).",
        CredentialRead = "credential.read": "A credential's metadata was read.",
        CredentialList = "credential.list": "Credentials were listed.",
        AuditRead = "audit.read": "The audit journal was read.",
        AuditVerify = "audit.verify": "The audit chains were verified.",
        OrgRead = "org.read": "An organization was read.",
        WorkspaceRead = "workspace.read": "Workspaces were read.",
        PrincipalRead = "principal.read": "Principals were read.",
        RoleBindingRead = "role_binding.read": "Role bindings were read.",
        TokenRead = "token.read": "Tokens were listed.",
        ConnectionCreate = "connection.create": "A connection was created (details: kind, non-secret config).",
        ConnectionRead = "connection.read": "A connection was read.",
        ConnectionUpdate = "connection.update": "A connection's config or metadata changed.",
        ConnectionDelete = "connection.delete": "A connection was deleted.",
        ConnectionAttach = "connection.attach": "A credential was attached to a connection (details: an environment override's reason).",
        ConnectionDetach = "connection.detach": "A credential was detached from a connection.",
        ConnectionResolve = "connection.resolve": "A worker received a connection's plaintext (recorded before it leaves; refusals too).",
        CredentialDetachAll = "credential.detach_all": "A credential was detached from every connection at once.",
        CredentialReview = "credential.review": "A credential was reviewed (keep or remove, with a note).",
        PipelineCreate = "pipeline.create": "A pipeline was created.",
        PipelineRead = "pipeline.read": "A pipeline was read.",
        PipelineUpdate = "pipeline.update": "A pipeline's name, description or connections changed.",
        PipelineDelete = "pipeline.delete": "A pipeline was deleted.",
        ReportRead = "report.read": "A review report was read.",
        ConnectionTest = "connection.test": "Test connection ran (details: outcome, code, the version tested).",
        CredentialPurge = "credential.purge": "A credential's key material was destroyed now (details: the reason).",
        CredentialExpiring = "credential.expiring": "A credential's expiry is near (a threshold of the organization's alert days was crossed).",
        CredentialExpired = "credential.expired": "A credential expired.",
        CredentialRotationDue = "credential.rotation_due": "A credential's rotation is due soon.",
        CredentialRotationOverdue = "credential.rotation_overdue": "A credential's rotation is overdue.",
        CredentialTransfer = "credential.transfer": "Ownership of a credential moved (offboarding).",
        PrincipalOffboard = "principal.offboard": "A principal was offboarded (tokens and sessions revoked, ownership moved).",
        KeysRotate = "keys.rotate": "A new primary key encryption key was added to the keyring.",
        KeysRewrap = "keys.rewrap": "Data keys were re-wrapped under the primary key (details: how many).",
        AlertAuthFailures = "alert.auth_failures": "Failed authentications from one address or for one principal passed the spike threshold.",
        AlertDenials = "alert.denials": "Authorization denials of one principal passed the spike threshold.",
        AlertTestFailures = "alert.test_failures": "Failed Test connection runs passed the spike threshold.",
        AlertTargetAuthFailures = "alert.target_auth_failures": "Workers reported authentication failures at a target past the threshold (the credential may be auto-disabled).",
        AlertResolveRefused = "alert.resolve_refused": "A resolve was refused for a credential's state (disabled, deleted, expired, revoked).",
        ResolveReport = "resolve.report": "A worker reported how using a resolved secret went (ok, auth_failed, error).",
        OauthAuthorizeStart = "oauth.authorize_start": "An OAuth consent flow was started.",
        OauthAuthorize = "oauth.authorize": "OAuth consent was recorded (tokens stored in a new version).",
        OauthCallback = "oauth.callback": "The OAuth provider called back (success or refusal).",
        OauthRefresh = "oauth.refresh": "An OAuth access token was refreshed (or the refresh failed).",
        OauthGrantRevoke = "oauth.grant_revoke": "An OAuth grant was revoked: its refresh token at the provider (RFC 7009), its tokens from the credential.",
        AlertOauthNeedsReauthorization = "alert.oauth_needs_reauthorization": "The OAuth provider refused the grant: someone must authorize again.",
        AlertOauthRefreshFailing = "alert.oauth_refresh_failing": "Refreshing an OAuth token keeps failing.",
        AlertAuditBacklog = "alert.audit_backlog": "An audit sink's backlog passed its limit.",
        AuditCheckpoint = "audit.checkpoint": "A signed checkpoint of the audit chains was recorded.",
        AuditShardsOpened = "audit.shards_opened": "An organization's audit shard chains were opened (their names are in the details).",
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn actions_are_unique_dotted_and_documented() {
        let checked =
            credvault_domain::catalogue::check(Action::ALL, Action::as_str, Action::doc, Action::parse, |b| {
                b.is_ascii_lowercase() || b == b'_' || b == b'.'
            });
        assert_eq!(checked, Ok(()));
        assert!(Action::ALL.iter().all(|a| a.as_str().contains('.')));
    }
}
