//! Checks of credential requests: labels, expiry, rotation period, description, names, references to other credentials, fields.

use super::*;

/// Checks labels: at most 32, keys `[a-z0-9_.-/]{1,63}`, values strings of at most 256 chars.
pub(super) fn check_labels(labels: &Map<String, Json>) -> CoreResult<()> {
    if labels.len() > 32 {
        return Err(CoreError::invalid("labels", Code::TooMany, "at most 32 labels"));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'/'));
        if !key_ok {
            return Err(CoreError::invalid(
                format!("labels.{k}"),
                Code::InvalidLabel,
                "label keys are 1–63 characters of a-z, 0-9, '_', '-', '.', '/'",
            ));
        }
        match v {
            Json::String(s) if s.len() <= 256 && !s.chars().any(char::is_control) => {}
            _ => {
                return Err(CoreError::invalid(
                    format!("labels.{k}"),
                    Code::InvalidLabel,
                    "label values are strings of at most 256 printable characters",
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn write_labels(tx: &mut dyn Tx, id: &str, labels: &Map<String, Json>) -> CoreResult<()> {
    tx.execute("DELETE FROM credential_labels WHERE credential_id = $1", &[id.into()])?;
    for (k, v) in labels {
        tx.execute(
            "INSERT INTO credential_labels (credential_id, key, value) VALUES ($1, $2, $3)",
            &[id.into(), k.as_str().into(), v.as_str().unwrap_or_default().into()],
        )?;
    }
    Ok(())
}

pub(super) fn parse_expiry(field: &str, s: Option<&str>) -> CoreResult<Option<i64>> {
    match s {
        None => Ok(None),
        Some(s) => parse_rfc3339(s).map(Some).ok_or_else(|| {
            CoreError::invalid(
                field,
                Code::InvalidTimestamp,
                "must be an RFC 3339 timestamp such as 2027-01-31T00:00:00Z",
            )
        }),
    }
}

pub(super) fn check_rotation(days: Option<i64>) -> CoreResult<()> {
    match days {
        Some(d) if !(1..=3650).contains(&d) => Err(CoreError::invalid(
            "rotation_period_days",
            Code::OutOfRange,
            "must be between 1 and 3650",
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_description(d: Option<&str>) -> CoreResult<()> {
    match d {
        Some(d) if d.len() > 4096 => Err(CoreError::invalid(
            "description",
            Code::TooLong,
            "must be at most 4096 bytes",
        )),
        _ => Ok(()),
    }
}

pub(super) fn name_conflict(e: StoreError) -> CoreError {
    match e {
        StoreError::Unique(_) => CoreError::conflict(
            Code::NameTaken,
            "a credential with this name already exists in this scope",
        ),
        other => CoreError::Store(other),
    }
}

/// Checks references to other credentials inside fields (AWS role chains). The source must be
/// visible from the chain credential's scope by the rule of attachment (organization-wide, or
/// in the chain credential's own workspace); anything else — another workspace's credential,
/// another organization's, or no credential at all — is the same 404 `not_found`, so the
/// answer tells nothing about what exists outside the scope.
pub(super) fn check_references(
    tx: &mut dyn Tx,
    org: &str,
    ws: Option<&str>,
    ty: CredentialType,
    v: &ValidatedFields,
    self_id: &str,
) -> CoreResult<()> {
    if ty != CredentialType::Aws {
        return Ok(());
    }
    let Some(src) = v.public.get("source_credential_id").and_then(Json::as_str) else {
        return Ok(());
    };
    if src == self_id {
        return Err(CoreError::invalid(
            "fields.source_credential_id",
            Code::InvalidReference,
            "a credential cannot be its own source",
        ));
    }
    let found = tx.query_opt(
        "SELECT type, workspace_id FROM credentials WHERE id = $1 AND org_id = $2",
        &[src.into(), org.into()],
    )?;
    let visible = match &found {
        Some(r) => match r.opt_text(1)? {
            None => true,
            Some(src_ws) => ws == Some(src_ws.as_str()),
        },
        None => false,
    };
    if !visible {
        return Err(CoreError::NotFound { what: "credential" });
    }
    // Walk the chain above the source: it must end at an access key, never come back here.
    let mut next = Some(src.to_owned());
    let mut hops = 0;
    while let Some(id) = next.take() {
        hops += 1;
        if id == self_id || hops > 5 {
            return Err(CoreError::invalid(
                "fields.source_credential_id",
                Code::InvalidReference,
                if hops > 5 {
                    "the role chain would be longer than 5 hops"
                } else {
                    "the role chain would loop back to this credential"
                },
            ));
        }
        let row = tx.query_opt(
            "SELECT v.public_fields FROM credentials c JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version \
             WHERE c.id = $1 AND c.org_id = $2",
            &[id.as_str().into(), org.into()],
        )?;
        if let Some(r) = row {
            let public: Json = serde_json::from_str(&r.text(0)?)?;
            next = public
                .get("source_credential_id")
                .and_then(Json::as_str)
                .map(str::to_owned);
        }
    }
    match found {
        Some(r) if r.text(0)? == "aws" => Ok(()),
        Some(_) => Err(CoreError::invalid(
            "fields.source_credential_id",
            Code::InvalidReference,
            "must name an aws credential",
        )),
        None => Err(CoreError::NotFound { what: "credential" }),
    }
}

/// Parses a submitted list of allowed destinations; errors name `allowed_destinations[i]`.
pub(crate) fn parse_allowed(list: &[String]) -> CoreResult<credvault_domain::destinations::AllowedSet> {
    credvault_domain::destinations::AllowedSet::parse(list).map_err(|errs| {
        CoreError::InvalidFields(
            errs.into_iter()
                .map(|e| credential_types::FieldError {
                    field: format!("allowed_destinations[{}]", e.index),
                    code: "invalid_destination",
                    message: e.message,
                })
                .collect(),
        )
    })
}

pub(super) fn validate_fields(ty: CredentialType, variant: Option<&str>, fields: Json) -> CoreResult<ValidatedFields> {
    credential_types::validate(ty, variant, fields).map_err(CoreError::InvalidFields)
}
