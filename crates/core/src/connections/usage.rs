//! Where a credential is used (connections, pipelines, AWS role chains).

use super::*;

/// What uses a credential, limited to `visible` workspaces (`None`: all).
pub(super) fn usage_visible(tx: &mut dyn Tx, credential_id: &str, visible: Option<&[String]>) -> CoreResult<Usage> {
    let mut u = usage_with_chains(tx, credential_id)?;
    if let Some(v) = visible {
        u.connections.retain(|c| v.contains(&c.workspace_id));
        u.pipelines.retain(|p| v.contains(&p.workspace_id));
        // Organization-wide chain credentials (no workspace) are visible to every member.
        u.chained_credentials
            .retain(|c| c.workspace_id.is_empty() || v.contains(&c.workspace_id));
    }
    Ok(u)
}

pub(super) fn usage_of(tx: &mut dyn Tx, credential_id: &str) -> CoreResult<Usage> {
    let rows = tx.query(
        "SELECT id, name, workspace_id, environment FROM connections WHERE credential_id = $1 ORDER BY seq",
        &[credential_id.into()],
    )?;
    let connections = rows
        .iter()
        .map(|r| {
            Ok(UsageRef {
                id: r.text(0)?,
                name: r.text(1)?,
                workspace_id: r.text(2)?,
                environment: Some(r.text(3)?),
                via_credential_id: None,
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    let rows = tx.query(
        "SELECT DISTINCT p.id, p.name, p.workspace_id, p.seq FROM pipelines p \
         JOIN pipeline_connections pc ON pc.pipeline_id = p.id \
         JOIN connections c ON c.id = pc.connection_id WHERE c.credential_id = $1 ORDER BY p.seq",
        &[credential_id.into()],
    )?;
    let pipelines = rows
        .iter()
        .map(|r| {
            Ok(UsageRef {
                id: r.text(0)?,
                name: r.text(1)?,
                workspace_id: r.text(2)?,
                environment: None,
                via_credential_id: None,
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    Ok(Usage {
        connections,
        pipelines,
        chained_credentials: Vec::new(),
    })
}

/// What uses a credential directly and through AWS role chains that start from it (usage,
/// the delete guard).
pub(crate) fn usage_with_chains(tx: &mut dyn Tx, credential_id: &str) -> CoreResult<Usage> {
    let mut u = usage_of(tx, credential_id)?;
    for user in crate::testing::chain_users(tx, credential_id)? {
        let c = load_cred(tx, &user, false)?;
        u.chained_credentials.push(UsageRef {
            id: c.id.clone(),
            name: c.name.clone(),
            workspace_id: c.workspace_id.clone().unwrap_or_default(),
            environment: Some(c.environment.clone()),
            via_credential_id: None,
        });
        let via = usage_of(tx, &user)?;
        for mut r in via.connections {
            r.via_credential_id = Some(user.clone());
            u.connections.push(r);
        }
        for mut r in via.pipelines {
            if !u.pipelines.iter().any(|p| p.id == r.id) {
                r.via_credential_id = Some(user.clone());
                u.pipelines.push(r);
            }
        }
    }
    Ok(u)
}

impl Service {
    /// Connections and pipelines that use a credential.
    pub async fn credential_usage(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<Usage> {
        let id = id.to_owned();
        let prepare = credential_plan(
            &id,
            false,
            Access::Read,
            Permission::MetadataRead,
            Action::CredentialRead,
        );
        self.operate(ctx, actor, Mode::Read, prepare, move |ops, _| {
            let visible = ops.visible_workspaces(None, Action::CredentialRead, Permission::MetadataRead)?;
            usage_visible(ops.tx(), &id, visible.as_deref())
        })
        .await
    }
}
