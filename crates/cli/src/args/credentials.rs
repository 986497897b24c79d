//! `credential …` against the API: building the fields (flags, file, hidden prompt), carrying public fields into a new version.

use super::*;

pub(super) async fn credential(cl: Client, c: CredentialCmd) -> anyhow::Result<()> {
    match c {
        CredentialCmd::Create {
            name,
            ty,
            variant,
            workspace,
            org,
            environment,
            labels,
            fields,
            fields_file,
            description,
            expires_at,
            rotation_period_days,
            allow_destinations,
        } => {
            if workspace.is_none() && org.is_none() {
                bail!("give --workspace WS (or --org ORG for an organization-wide credential)");
            }
            let t = CredentialType::parse(&ty).with_context(|| format!("unknown type `{ty}`"))?;
            let field_values = collect_fields(t, variant.as_deref(), &fields, fields_file.as_deref())?;
            let mut label_map = Map::new();
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .with_context(|| format!("label `{l}` is not key=value"))?;
                label_map.insert(k.to_owned(), json!(v));
            }
            let mut body = json!({
                "name": name, "type": ty, "variant": variant, "environment": environment, "labels": label_map,
                "description": description, "expires_at": expires_at, "rotation_period_days": rotation_period_days,
                "allowed_destinations": allow_destinations, "fields": field_values,
            });
            if let Some(w) = workspace {
                body["workspace_id"] = json!(w);
            } else {
                body["org_id"] = json!(org);
            }
            let r = cl.call(Method::POST, "/v1/credentials", &[], Some(&body)).await;
            credvault_domain::secret::zeroize_json(&mut body);
            print(&r?);
        }
        CredentialCmd::List {
            workspace,
            ty,
            environment,
            label,
            all,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(w) = workspace {
                q.push(("workspace_id", w));
            }
            if let Some(t) = ty {
                q.push(("type", t));
            }
            if let Some(e) = environment {
                q.push(("environment", e));
            }
            for l in label {
                q.push(("label", l));
            }
            let mut items = Vec::new();
            loop {
                let page = cl.call(Method::GET, "/v1/credentials", &q, None).await?;
                if let Some(a) = page.get("items").and_then(Value::as_array) {
                    items.extend(a.iter().cloned());
                }
                match page.get("next_cursor").and_then(Value::as_str) {
                    Some(c) if all => {
                        q.retain(|(k, _)| *k != "cursor");
                        q.push(("cursor", c.to_owned()));
                    }
                    _ => break,
                }
            }
            println!(
                "{:<32} {:<28} {:<9} {:<8} {:<17} {:>7}",
                "ID", "NAME", "TYPE", "ENV", "STATUS", "VERSION"
            );
            for i in &items {
                let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                println!(
                    "{:<32} {:<28} {:<9} {:<8} {:<17} {:>7}",
                    s("id"),
                    s("name"),
                    s("type"),
                    s("environment"),
                    s("status"),
                    i.get("current_version").and_then(Value::as_i64).unwrap_or(0)
                );
            }
        }
        CredentialCmd::Show { id } => print(
            &cl.call(Method::GET, &format!("/v1/credentials/{id}"), &[], None)
                .await?,
        ),
        CredentialCmd::Rotate {
            id,
            fields,
            fields_file,
            replace,
            promote,
        } => {
            let cred = cl
                .call(Method::GET, &format!("/v1/credentials/{id}"), &[], None)
                .await?;
            let ty = cred
                .get("type")
                .and_then(Value::as_str)
                .and_then(CredentialType::parse)
                .context("unexpected credential type")?;
            let variant = cred.get("variant").and_then(Value::as_str).map(str::to_owned);
            let mut new_fields = collect_fields(ty, variant.as_deref(), &fields, fields_file.as_deref())?;
            carry_public_fields(ty, variant.as_deref(), &cred, &mut new_fields)?;
            let mut body = json!({
                "fields": new_fields,
                "mode": if replace { "replace" } else { "stage" },
            });
            let r = cl
                .call(
                    Method::POST,
                    &format!("/v1/credentials/{id}/versions"),
                    &[],
                    Some(&body),
                )
                .await;
            credvault_domain::secret::zeroize_json(&mut body);
            let created = r?;
            if promote {
                let n = created
                    .get("version")
                    .and_then(Value::as_i64)
                    .context("no version in response")?;
                print(
                    &cl.call(
                        Method::POST,
                        &format!("/v1/credentials/{id}/versions/{n}/promote"),
                        &[],
                        None,
                    )
                    .await?,
                );
            } else {
                print(&created);
            }
        }
        CredentialCmd::Disable { id } => print(
            &cl.call(Method::POST, &format!("/v1/credentials/{id}/disable"), &[], None)
                .await?,
        ),
        CredentialCmd::Enable { id } => print(
            &cl.call(Method::POST, &format!("/v1/credentials/{id}/enable"), &[], None)
                .await?,
        ),
        CredentialCmd::Delete { id } => print(
            &cl.call(Method::DELETE, &format!("/v1/credentials/{id}"), &[], None)
                .await?,
        ),
        CredentialCmd::Purge { id, reason } => print(
            &cl.call(
                Method::DELETE,
                &format!("/v1/credentials/{id}"),
                &[("purge", "true".into()), ("reason", reason)],
                None,
            )
            .await?,
        ),
        CredentialCmd::RevokeGrant { id, reason } => print(
            &cl.call(
                Method::POST,
                &format!("/v1/credentials/{id}/oauth/revoke"),
                &[],
                Some(&serde_json::json!({"reason": reason})),
            )
            .await?,
        ),
        CredentialCmd::RotateTested {
            id,
            fields_file,
            fields,
            allow_untestable,
        } => {
            let cred = cl
                .call(Method::GET, &format!("/v1/credentials/{id}"), &[], None)
                .await?;
            let ty = cred
                .get("type")
                .and_then(Value::as_str)
                .and_then(CredentialType::parse)
                .context("unexpected credential type")?;
            let variant = cred.get("variant").and_then(Value::as_str).map(str::to_owned);
            let mut new_fields = collect_fields(ty, variant.as_deref(), &fields, fields_file.as_deref())?;
            carry_public_fields(ty, variant.as_deref(), &cred, &mut new_fields)?;
            let mut body = json!({"fields": new_fields});
            // Only when asked: an older server refuses the unknown field.
            if allow_untestable {
                body["allow_untestable"] = Value::Bool(true);
            }
            let r = cl
                .call(Method::POST, &format!("/v1/credentials/{id}/rotate"), &[], Some(&body))
                .await;
            credvault_domain::secret::zeroize_json(&mut body);
            let r = r?;
            print(&r);
            if r.get("promoted") != Some(&Value::Bool(true)) {
                bail!("not promoted: a dependent connection failed its test; the new version stays pending");
            }
        }
        CredentialCmd::Test { id, version } => {
            let r = cl
                .call(
                    Method::POST,
                    &format!("/v1/credentials/{id}/test"),
                    &[],
                    Some(&json!({"version": version})),
                )
                .await?;
            print(&r);
            if r.get("ok") != Some(&Value::Bool(true)) {
                bail!("not every dependent connection passed");
            }
        }
        CredentialCmd::Destinations { id, allow, remove } => {
            let path = format!("/v1/credentials/{id}");
            let current = cl.call(Method::GET, &path, &[], None).await?;
            if allow.is_empty() && remove.is_empty() {
                print(&json!({
                    "allowed_destinations": current["allowed_destinations"],
                    "field_destinations": current["field_destinations"],
                }));
                return Ok(());
            }
            let mut list: Vec<String> = current["allowed_destinations"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            for r in &remove {
                let before = list.len();
                list.retain(|e| e != r);
                if list.len() == before {
                    bail!(
                        "`{r}` is not in the list (entries are removed exactly as `credential destinations {id}` shows them)"
                    );
                }
            }
            list.extend(allow);
            let r = cl
                .call(Method::PATCH, &path, &[], Some(&json!({"allowed_destinations": list})))
                .await?;
            print(&json!({"allowed_destinations": r["allowed_destinations"]}));
        }
        CredentialCmd::Restore { id } => print(
            &cl.call(Method::POST, &format!("/v1/credentials/{id}/restore"), &[], None)
                .await?,
        ),
    }
    Ok(())
}

/// A new version repeats the current version's non-secret fields (a user name, URLs) that
/// the new fields do not give, so rotating a password needs only the password. Fields that hold
/// a secret anywhere (an SSH tunnel with its key) are not carried: give them whole.
pub(super) fn carry_public_fields(
    ty: CredentialType,
    variant: Option<&str>,
    cred: &Value,
    fields: &mut Value,
) -> anyhow::Result<()> {
    fn holds_secret(f: &FieldSchema) -> bool {
        f.secret
            || match f.kind {
                FieldKind::Object(inner) | FieldKind::List(inner) => inner.iter().any(holds_secret),
                _ => false,
            }
    }
    let vs = credential_types::resolve_variant(ty, variant).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (Some(current), Value::Object(new)) = (cred.get("fields").and_then(Value::as_object), fields) else {
        return Ok(());
    };
    for f in vs.fields.iter().filter(|f| !holds_secret(f)) {
        if let Some(v) = current.get(f.name)
            && !new.contains_key(f.name)
        {
            new.insert(f.name.to_owned(), v.clone());
        }
    }
    Ok(())
}

/// Builds the `fields` object: `--field` pairs (refused for secret fields), then the JSON file
/// or stdin, then a hidden prompt for required secret fields still missing.
pub(super) fn collect_fields(
    ty: CredentialType,
    variant: Option<&str>,
    pairs: &[String],
    file: Option<&std::path::Path>,
) -> anyhow::Result<Value> {
    let vs = credential_types::resolve_variant(ty, variant).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut fields = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--field `{p}` is not key=value"))?;
        let path: Vec<&str> = k.split('.').collect();
        let schema =
            find_field(vs.fields, &path).with_context(|| format!("`{k}` is not a field of this credential type"))?;
        if schema.secret {
            bail!(
                "`{k}` is a secret field: secrets are never read from the command line; use --fields-file FILE (or - for stdin) or the prompt"
            );
        }
        let value = match schema.kind {
            FieldKind::Integer => json!(v.parse::<i64>().with_context(|| format!("`{k}` must be an integer"))?),
            FieldKind::StringList => json!(v.split(',').map(str::trim).collect::<Vec<_>>()),
            _ => json!(v),
        };
        insert_path(&mut fields, &path, value);
    }
    if let Some(f) = file {
        let mut text = String::new();
        if f.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
        } else {
            text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        }
        let parsed: anyhow::Result<Value> = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "the fields file is not a JSON object (line {}, column {})",
                e.line(),
                e.column()
            )
        });
        zeroize::Zeroize::zeroize(&mut text);
        let Value::Object(m) = parsed? else {
            bail!("the fields file must hold a JSON object")
        };
        for (k, v) in m {
            fields.insert(k, v);
        }
    }
    for f in vs
        .fields
        .iter()
        .filter(|f| f.secret && f.required && matches!(f.kind, FieldKind::String))
    {
        if fields.contains_key(f.name) {
            continue;
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "secret field `{}` is missing: give it in --fields-file (stdin is not a terminal, so no prompt)",
                f.name
            );
        }
        let v =
            rpassword::prompt_password(format!("{} (hidden): ", f.name)).context("cannot read from the terminal")?;
        fields.insert(f.name.to_owned(), Value::String(v));
    }
    Ok(Value::Object(fields))
}

pub(super) fn find_field<'a>(fields: &'a [FieldSchema], path: &[&str]) -> Option<&'a FieldSchema> {
    let (first, rest) = path.split_first()?;
    let f = fields.iter().find(|f| f.name == *first)?;
    if rest.is_empty() {
        return Some(f);
    }
    match &f.kind {
        FieldKind::Object(sub) => find_field(sub, rest),
        _ => None,
    }
}

pub(super) fn insert_path(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                insert_path(m, rest, value);
            }
        }
    }
}
