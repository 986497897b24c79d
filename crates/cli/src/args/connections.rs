//! `connection …` and `pipeline …` against the API.

use super::*;

pub(super) async fn connection(cl: Client, c: ConnectionCmd) -> anyhow::Result<()> {
    match c {
        ConnectionCmd::Create {
            name,
            workspace,
            environment,
            kind,
            set,
            config_file,
            credential,
            override_reason,
        } => {
            let mut cfg = Map::new();
            if let Some(f) = config_file {
                let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                let Value::Object(m) =
                    serde_json::from_str(&text).context("the config file must hold a JSON object")?
                else {
                    bail!("the config file must hold a JSON object");
                };
                cfg = m;
            }
            for kv in set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set `{kv}` is not key=value"))?;
                let value = if let Ok(n) = v.parse::<i64>() {
                    json!(n)
                } else if v == "true" || v == "false" {
                    json!(v == "true")
                } else {
                    json!(v)
                };
                cfg.insert(k.to_owned(), value);
            }
            let body = json!({"name": name, "workspace_id": workspace, "environment": environment, "kind": kind, "config": cfg,
                              "credential_id": credential, "override_reason": override_reason});
            print(&cl.call(Method::POST, "/v1/connections", &[], Some(&body)).await?)
        }
        ConnectionCmd::List { workspace, credential } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(w) = workspace {
                q.push(("workspace_id", w));
            }
            if let Some(c) = credential {
                q.push(("credential_id", c));
            }
            print(&cl.call(Method::GET, "/v1/connections", &q, None).await?)
        }
        ConnectionCmd::Show { id } => print(
            &cl.call(Method::GET, &format!("/v1/connections/{id}"), &[], None)
                .await?,
        ),
        ConnectionCmd::Attach {
            id,
            credential,
            override_reason,
        } => print(
            &cl.call(
                Method::PUT,
                &format!("/v1/connections/{id}/credential"),
                &[],
                Some(&json!({"credential_id": credential, "override_reason": override_reason})),
            )
            .await?,
        ),
        ConnectionCmd::Detach { id } => print(
            &cl.call(Method::DELETE, &format!("/v1/connections/{id}/credential"), &[], None)
                .await?,
        ),
        ConnectionCmd::Test { id, version } => {
            let r = cl
                .call(
                    Method::POST,
                    &format!("/v1/connections/{id}/test"),
                    &[],
                    Some(&json!({"version": version})),
                )
                .await?;
            print(&r);
            if r.get("ok") != Some(&Value::Bool(true)) {
                bail!("the test failed");
            }
        }
        ConnectionCmd::Delete { id } => print(
            &cl.call(Method::DELETE, &format!("/v1/connections/{id}"), &[], None)
                .await?,
        ),
    }
    Ok(())
}
