//! The problem codes: every `code` a problem document (RFC 9457) of the API can carry, in one
//! catalogue. A code is a [`Code`], never a string at the call site, so an answer cannot carry
//! a code this list (and the OpenAPI document built from it, `x-problem-codes`) does not name.
//! Field-level codes inside `invalid_fields` (`errors[].code`) are
//! [`crate::credential_types::FieldError`]'s.

crate::catalogue! {
    /// A problem code (see the module documentation).
    pub enum Code {
        AlreadyCurrent = "already_current": "The version is already the current one.",
        AlreadyPurged = "already_purged": "The credential was already purged.",
        AuditUnavailable = "audit_unavailable": "A blocking audit sink is too far behind (or the audit record could not be written): secret-bearing operations wait until it catches up.",
        BadAuthorizationUrl = "bad_authorization_url": "The OAuth credential's authorization_url is not a usable URL.",
        BindingExists = "binding_exists": "The principal already has this role in this scope.",
        BodyTimeout = "body_timeout": "The request body did not arrive in time after its headers.",
        BodyTooLarge = "body_too_large": "The request body is larger than the server accepts.",
        Busy = "busy": "The server is busy with this kind of request (e.g. sign-ins being checked); retry shortly.",
        CannotOffboardSelf = "cannot_offboard_self": "A principal cannot offboard itself.",
        CannotRevokeCurrent = "cannot_revoke_current": "The current version cannot be revoked; promote another version first.",
        ConflictingParameters = "conflicting_parameters": "Two parameters that exclude each other were both given (the detail names them).",
        ConnectionInUse = "connection_in_use": "Pipelines use this connection (the detail names them).",
        ConnectionNotFound = "connection_not_found": "connection_ids names a connection that is not in the pipeline's workspace.",
        CredentialDeleted = "credential_deleted": "The credential is pending deletion.",
        CredentialDisabled = "credential_disabled": "The credential is disabled.",
        CredentialExpired = "credential_expired": "The credential has expired.",
        CredentialInUse = "credential_in_use": "The credential is attached to connections; detach it first.",
        CredentialNotActive = "credential_not_active": "The credential is not active (the detail says its status).",
        CredentialPurged = "credential_purged": "The credential was purged; its keys are destroyed and it cannot change.",
        CredentialTypeMismatch = "credential_type_mismatch": "The credential's type and variant do not fit the connection's kind.",
        DestinationNotAllowed = "destination_not_allowed": "A host the secret would be sent to is not among the credential's allowed destinations (409 at resolve).",
        EnvironmentMismatch = "environment_mismatch": "The credential's environment differs from the connection's, and the organization does not allow overrides.",
        Forbidden = "forbidden": "The caller lacks the permission (the detail names it).",
        InThePast = "in_the_past": "A time that must be in the future is not.",
        Internal = "internal": "An internal error; the request ID identifies it in the server log.",
        InvalidCursor = "invalid_cursor": "The cursor is not one this API returned.",
        InvalidDecision = "invalid_decision": "A review decision is not keep or remove.",
        InvalidEnvironment = "invalid_environment": "An environment name is not 1–32 of a-z, 0-9 and '-'.",
        InvalidField = "invalid_field": "A field has the wrong type or value (the detail and `field` say which).",
        InvalidFields = "invalid_fields": "Credential fields or connection config do not validate; `errors` lists each problem with its own code.",
        InvalidFormat = "invalid_format": "A value is not in the expected format (the detail says which).",
        InvalidId = "invalid_id": "An ID is malformed.",
        InvalidKeep = "invalid_keep": "keep names a field more than once or a field that is not top-level.",
        InvalidLabel = "invalid_label": "A label key or value breaks the label rules.",
        InvalidLabelFilter = "invalid_label_filter": "A label filter is not key:value.",
        InvalidName = "invalid_name": "A name breaks the naming rules (1–128 letters, digits, '-', '_', '.').",
        InvalidOutcome = "invalid_outcome": "A reported outcome is not ok, auth_failed or error.",
        InvalidRole = "invalid_role": "Not a role this server knows.",
        InvalidParameter = "invalid_parameter": "A query parameter has a value the server refuses.",
        InvalidReference = "invalid_reference": "A reference to another credential is not allowed (itself, a non-aws credential, or a chain longer than 5 hops).",
        InvalidRunId = "invalid_run_id": "run_id is not 1–200 printable characters.",
        InvalidTimestamp = "invalid_timestamp": "A time is not RFC 3339.",
        InvalidType = "invalid_type": "A value has the wrong JSON type.",
        KeptAndGiven = "kept_and_given": "A field is both kept and given in fields.",
        KeptWithChangedFields = "kept_with_changed_fields": "Secrets can be kept only when every non-secret field stays the same.",
        LoginTaken = "login_taken": "Another person of the organization signs in with this name.",
        MalformedJson = "malformed_json": "The body is not valid JSON.",
        MethodNotAllowed = "method_not_allowed": "The route does not accept that method.",
        Mismatch = "mismatch": "Two values that must agree differ (e.g. a new password and its repetition).",
        NameTaken = "name_taken": "Something of this kind with this name already exists in this scope.",
        NoCredential = "no_credential": "The connection has no credential attached.",
        NotAServiceAccount = "not_a_service_account": "The principal named must be a service account.",
        NotAUser = "not_a_user": "The principal is a service account; only users sign in with a password.",
        NotAnAuthorizationCodeCredential = "not_an_authorization_code_credential": "Consent is for OAuth credentials of variant authorization_code.",
        NotDeleted = "not_deleted": "The credential is not pending deletion.",
        NotFound = "not_found": "No such resource, or not visible to the caller (422 when the ID is a field of the body).",
        NotInCurrentVersion = "not_in_current_version": "A kept field is not in the current version.",
        OauthNeedsReauthorization = "oauth_needs_reauthorization": "The OAuth grant was revoked or expired at the provider; authorize it again.",
        OauthNotAuthorized = "oauth_not_authorized": "Nobody has authorized this OAuth credential yet.",
        OauthRefreshBusy = "oauth_refresh_busy": "Another node is refreshing this OAuth token; retry shortly.",
        OauthRefreshFailing = "oauth_refresh_failing": "The OAuth provider fails to refresh the token; retry later.",
        OutOfRange = "out_of_range": "A number is outside its allowed range (the detail says it).",
        OverrideReasonRequired = "override_reason_required": "The environments differ: give a written override_reason.",
        PipelineMismatch = "pipeline_mismatch": "The pipeline does not use this connection.",
        ReasonRequired = "reason_required": "A purge needs a written reason of 1–1024 bytes.",
        RepeatedParameter = "repeated_parameter": "A query parameter was given more than once.",
        Required = "required": "A required value is missing.",
        RoleChainInvalid = "role_chain_invalid": "The AWS role chain loops or is longer than 5 hops.",
        SamePrincipal = "same_principal": "Ownership cannot move to the principal being offboarded.",
        ScopeRequired = "scope_required": "Exactly one of workspace_id and org_id is needed.",
        StsFailed = "sts_failed": "AWS STS did not issue session credentials along the role chain (the detail names the failing hop); nothing was released.",
        TooLong = "too_long": "A value is longer than allowed (the detail says the limit).",
        TooMany = "too_many": "More items than allowed (the detail says the limit).",
        TooManyFailures = "too_many_failures": "Too many failed authentications from this address; see Retry-After.",
        TypeNotEnabled = "type_not_enabled": "The organization's settings disable this credential type.",
        Unauthenticated = "unauthenticated": "No valid bearer token (missing, unknown, expired or revoked).",
        Unavailable = "unavailable": "The store is unavailable; retry later.",
        UnknownKind = "unknown_kind": "Not a connector kind this server knows.",
        UnknownParameter = "unknown_parameter": "An unknown query parameter (the detail lists the accepted ones).",
        UnknownType = "unknown_type": "Not a credential type this server knows.",
        UnreadableBody = "unreadable_body": "The request body could not be read.",
        UnsupportedMediaType = "unsupported_media_type": "The body must be application/json.",
        VersionChanged = "version_changed": "Another version became current meanwhile; read again and retry.",
        VersionDestroyed = "version_destroyed": "The keys of this version were destroyed.",
        VersionNotResolvable = "version_not_resolvable": "The version is neither current nor within its grace period.",
        VersionRevoked = "version_revoked": "The credential's current version is not usable.",
        WeakPassword = "weak_password": "The password is too short or too long.",
        WrongPassword = "wrong_password": "The current password is missing or wrong.",
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn codes_are_unique_snake_case_and_documented() {
        let checked = crate::catalogue::check(Code::ALL, Code::as_str, Code::doc, Code::parse, |b| {
            b.is_ascii_lowercase() || b == b'_'
        });
        assert_eq!(checked, Ok(()));
    }
}
