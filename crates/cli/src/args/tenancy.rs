//! `org …`, `workspace …`, `principal …`: tenancy against the API, and reading a new password.

use super::*;

pub(super) async fn org(cl: Client, c: OrgCmd) -> anyhow::Result<()> {
    match c {
        OrgCmd::Create { name } => print(
            &cl.call(Method::POST, "/v1/orgs", &[], Some(&json!({"name": name})))
                .await?,
        ),
        OrgCmd::List => print(&cl.call(Method::GET, "/v1/orgs", &[], None).await?),
        OrgCmd::Settings { org } => print(
            &cl.call(Method::GET, &format!("/v1/orgs/{org}/settings"), &[], None)
                .await?,
        ),
        OrgCmd::Set {
            org,
            enabled_types,
            allow_environment_override,
            recovery_window_days,
        } => {
            let mut patch = Map::new();
            if let Some(t) = enabled_types {
                patch.insert("enabled_types".into(), json!(t));
            }
            if let Some(b) = allow_environment_override {
                patch.insert("allow_environment_override".into(), json!(b));
            }
            if let Some(d) = recovery_window_days {
                patch.insert("recovery_window_days".into(), json!(d));
            }
            print(
                &cl.call(
                    Method::PATCH,
                    &format!("/v1/orgs/{org}/settings"),
                    &[],
                    Some(&Value::Object(patch)),
                )
                .await?,
            )
        }
    }
    Ok(())
}

pub(super) async fn principal(cl: Client, c: PrincipalCmd) -> anyhow::Result<()> {
    match c {
        PrincipalCmd::Create { org, kind, name } => print(
            &cl.call(
                Method::POST,
                "/v1/principals",
                &[],
                Some(&json!({"org_id": org, "kind": kind, "name": name})),
            )
            .await?,
        ),
        PrincipalCmd::List { org } => {
            let q: Vec<(&str, String)> = org.map(|o| ("org_id", o)).into_iter().collect();
            print(&cl.call(Method::GET, "/v1/principals", &q, None).await?)
        }
        PrincipalCmd::Show { id } => print(&cl.call(Method::GET, &format!("/v1/principals/{id}"), &[], None).await?),
        PrincipalCmd::Bind {
            id,
            role,
            workspace,
            org,
        } => {
            if workspace.is_none() && org.is_none() {
                bail!("give --workspace WS or --org ORG");
            }
            let body = json!({"principal_id": id, "role": role, "workspace_id": workspace, "org_id": org});
            print(&cl.call(Method::POST, "/v1/role-bindings", &[], Some(&body)).await?)
        }
        PrincipalCmd::Offboard { id, transfer_to } => print(
            &cl.call(
                Method::POST,
                &format!("/v1/principals/{id}/offboard"),
                &[],
                Some(&json!({"transfer_to": transfer_to})),
            )
            .await?,
        ),
        PrincipalCmd::SetPassword { id, password_stdin } => {
            let pw = read_password(password_stdin)?;
            cl.call(
                Method::PUT,
                &format!("/v1/principals/{id}/password"),
                &[],
                Some(&json!({"password": pw.as_str()})),
            )
            .await?;
            eprintln!("password set for {id}; the user's browser sessions have ended");
        }
        PrincipalCmd::Unbind { binding } => print(
            &cl.call(Method::DELETE, &format!("/v1/role-bindings/{binding}"), &[], None)
                .await?,
        ),
    }
    Ok(())
}

/// A new sign-in password: the first line of stdin, or typed twice at a hidden prompt.
pub(super) fn read_password(from_stdin: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if from_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line).context("cannot read stdin")?;
        let pw = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
        if pw.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal: pass --password-stdin and write the password to stdin");
    }
    let a = zeroize::Zeroizing::new(
        rpassword::prompt_password("new password (hidden): ").context("cannot read from the terminal")?,
    );
    let b = zeroize::Zeroizing::new(rpassword::prompt_password("again: ").context("cannot read from the terminal")?);
    if a != b {
        bail!("the two passwords differ");
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
