//! Pipelines: create, read, list, change, delete; the connections they use.

use super::*;

pub(super) fn pipeline_connections(tx: &mut dyn Tx, pipeline_id: &str) -> CoreResult<Vec<String>> {
    tx.query(
        "SELECT pc.connection_id FROM pipeline_connections pc JOIN connections c ON c.id = pc.connection_id \
         WHERE pc.pipeline_id = $1 ORDER BY c.seq",
        &[pipeline_id.into()],
    )?
    .iter()
    .map(|r| Ok(r.text(0)?))
    .collect()
}

pub(super) const PIPE_COLS: &str =
    "id, name, org_id, workspace_id, description, created_at, created_by, updated_at, last_used_at, seq";

pub(super) fn pipeline_view(tx: &mut dyn Tx, r: &Row) -> CoreResult<PipelineView> {
    let id = r.text(0)?;
    let connection_ids = pipeline_connections(tx, &id)?;
    Ok(PipelineView {
        id,
        name: r.text(1)?,
        org_id: r.text(2)?,
        workspace_id: r.text(3)?,
        connection_ids,
        description: r.opt_text(4)?,
        created_at: to_rfc3339(r.int(5)?),
        created_by: r.text(6)?,
        updated_at: to_rfc3339(r.int(7)?),
        last_used_at: ts(r.opt_int(8)?),
    })
}

pub(super) fn load_pipeline_row(tx: &mut dyn Tx, id: &str) -> CoreResult<Row> {
    if PipelineId::parse(id).is_err() {
        return Err(CoreError::NotFound { what: "pipeline" });
    }
    tx.query_opt(
        &format!("SELECT {PIPE_COLS} FROM pipelines WHERE id = $1"),
        &[id.into()],
    )?
    .ok_or(CoreError::NotFound { what: "pipeline" })
}

/// Every connection must exist in the pipeline's workspace.
pub(super) fn check_pipeline_connections(tx: &mut dyn Tx, ws: &str, ids: &[ConnectionId]) -> CoreResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (i, c) in ids.iter().enumerate() {
        let found = tx.query_opt(
            "SELECT workspace_id FROM connections WHERE id = $1",
            &[c.as_str().into()],
        )?;
        match found {
            Some(r) if r.text(0)? == ws => {}
            _ => {
                return Err(CoreError::invalid(
                    format!("connection_ids[{i}]"),
                    Code::ConnectionNotFound,
                    "no such connection in the pipeline's workspace",
                ));
            }
        }
        if !out.iter().any(|o| o == c.as_str()) {
            out.push(c.to_string());
        }
    }
    if out.len() > 500 {
        return Err(CoreError::invalid(
            "connection_ids",
            Code::TooMany,
            "at most 500 connections per pipeline",
        ));
    }
    Ok(out)
}

/// `prepare` of an operation on one pipeline: loads its row and declares `perm` in its
/// workspace, the event `action`. The target: the row and the workspace ID.
fn pipeline_plan(
    id: &str,
    perm: Permission,
    action: Action,
) -> impl FnOnce(&mut dyn Tx) -> CoreResult<Plan<(Row, String)>> + Send + 'static {
    let id = id.to_owned();
    move |tx| {
        let r = load_pipeline_row(tx, &id)?;
        let (org_s, ws_s) = (r.text(2)?, r.text(3)?);
        let (org, ws) = (
            OrgId::from_trusted(org_s.clone()),
            WorkspaceId::from_trusted(ws_s.clone()),
        );
        let draft = Draft::new(action, "pipeline", id.as_str(), org_s.as_str()).workspace(Some(ws_s.as_str()));
        let check = Check::new(Scope::Workspace(&org, &ws), perm, "pipeline", draft);
        Ok(Plan::new((r, ws_s), check))
    }
}

impl Service {
    /// Creates a pipeline over connections of its workspace.
    pub async fn create_pipeline(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreatePipeline,
    ) -> CoreResult<PipelineView> {
        check_name(&req.name).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        check_description(req.description.as_deref())?;
        let ws_in = req.workspace_id.clone();
        let prepare = {
            move |tx: &mut dyn Tx| {
                let ws = ws_in;
                let org = workspace_org(tx, ws.as_str())?.ok_or(CoreError::NotFound { what: "workspace" })?;
                let id = PipelineId::generate();
                let draft = || {
                    Draft::new(Action::PipelineCreate, "pipeline", id.as_str(), org.as_str())
                        .workspace(Some(ws.as_str()))
                };
                let check = Check::new(
                    Scope::Workspace(&org, &ws),
                    Permission::CredentialAttach,
                    "workspace",
                    draft(),
                );
                Ok(Plan::new((org, ws, id), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, ws, id)| {
            let a = ops.actor().clone();
            let conns = check_pipeline_connections(ops.tx(), ws.as_str(), &req.connection_ids)?;
            let now = now_micros();
            ops.tx().execute(
                "INSERT INTO pipelines (id, org_id, workspace_id, name, description, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $6)",
                &[id.as_str().into(), org.as_str().into(), ws.as_str().into(), req.name.as_str().into(), req.description.clone().into(), now.into(), a.principal_id.as_str().into()],
            )
            .map_err(|e| name_conflict(e, "pipeline"))?;
            for c in &conns {
                ops.tx().execute("INSERT INTO pipeline_connections (pipeline_id, connection_id) VALUES ($1, $2)", &[id.as_str().into(), c.as_str().into()])?;
            }
            ops.record(ops.event().details(serde_json::json!({"name": req.name, "connection_ids": conns})))?;
            let r = load_pipeline_row(ops.tx(), id.as_str())?;
            pipeline_view(ops.tx(), &r)
        })
        .await
    }

    /// One pipeline.
    pub async fn get_pipeline(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<PipelineView> {
        let id = id.to_owned();
        let prepare = pipeline_plan(&id, Permission::MetadataRead, Action::PipelineRead);
        self.operate(ctx, actor, Mode::Read, prepare, move |ops, (r, _)| {
            pipeline_view(ops.tx(), &r)
        })
        .await
    }

    /// Pipelines the caller may see.
    pub async fn list_pipelines(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        f: PipelineFilter,
    ) -> CoreResult<Page<PipelineView>> {
        let PipelineFilter {
            org_id,
            workspace_id,
            connection_id,
            cursor,
            limit,
        } = f;
        let after = decode_cursor(cursor.as_deref())?;
        let limit = self.page_limit(limit);
        let org = org_id.unwrap_or_else(|| actor.org_id.to_string());
        let (asked, what) = (workspace_id.clone(), (Action::PipelineRead, Permission::MetadataRead));
        self.operate_list(ctx, actor, Mode::Read, &org.clone(), asked, what, move |ops, visible| {
            let tx = ops.tx();
            let mut sql = format!("SELECT {PIPE_COLS} FROM pipelines WHERE org_id = $1 AND seq > $2");
            let mut params: Vec<Value> = vec![org.as_str().into(), after.into()];
            push_in(&mut sql, &mut params, "workspace_id", visible.as_deref());
            if let Some(w) = &workspace_id {
                params.push(w.as_str().into());
                sql.push_str(&format!(" AND workspace_id = ${}", params.len()));
            }
            if let Some(c) = &connection_id {
                params.push(c.as_str().into());
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM pipeline_connections pc WHERE pc.pipeline_id = pipelines.id AND pc.connection_id = ${})",
                    params.len()
                ));
            }
            params.push((limit as i64 + 1).into());
            sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let more = rows.len() > limit;
            let mut items = Vec::new();
            let mut last = None;
            for r in rows.iter().take(limit) {
                items.push(pipeline_view(tx, r)?);
                last = Some(r.int(9)?);
            }
            Ok(Page { items, next_cursor: if more { last.map(crate::views::encode_cursor) } else { None } })
        })
        .await
    }

    /// Changes a pipeline.
    pub async fn patch_pipeline(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        p: PatchPipeline,
    ) -> CoreResult<PipelineView> {
        if let Some(n) = &p.name {
            check_name(n).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        }
        check_description(p.description.as_deref())?;
        let id = id.to_owned();
        let prepare = pipeline_plan(&id, Permission::CredentialAttach, Action::PipelineUpdate);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (_, ws_s)| {
            let now = now_micros();
            if let Some(n) = &p.name {
                ops.tx()
                    .execute(
                        "UPDATE pipelines SET name = $1 WHERE id = $2",
                        &[n.as_str().into(), id.as_str().into()],
                    )
                    .map_err(|e| name_conflict(e, "pipeline"))?;
            }
            if let Some(d) = &p.description {
                ops.tx().execute(
                    "UPDATE pipelines SET description = $1 WHERE id = $2",
                    &[d.as_str().into(), id.as_str().into()],
                )?;
            }
            let mut conns = None;
            if let Some(ids) = &p.connection_ids {
                let checked = check_pipeline_connections(ops.tx(), &ws_s, ids)?;
                ops.tx().execute(
                    "DELETE FROM pipeline_connections WHERE pipeline_id = $1",
                    &[id.as_str().into()],
                )?;
                for c in &checked {
                    ops.tx().execute(
                        "INSERT INTO pipeline_connections (pipeline_id, connection_id) VALUES ($1, $2)",
                        &[id.as_str().into(), c.as_str().into()],
                    )?;
                }
                conns = Some(checked);
            }
            ops.tx().execute(
                "UPDATE pipelines SET updated_at = $1 WHERE id = $2",
                &[now.into(), id.as_str().into()],
            )?;
            ops.record(
                ops.event()
                    .details(serde_json::json!({"name": p.name, "connection_ids": conns})),
            )?;
            let r = load_pipeline_row(ops.tx(), &id)?;
            pipeline_view(ops.tx(), &r)
        })
        .await
    }

    /// Deletes a pipeline.
    pub async fn delete_pipeline(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<PipelineView> {
        let id = id.to_owned();
        let prepare = pipeline_plan(&id, Permission::CredentialAttach, Action::PipelineDelete);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (r, _)| {
            let view = pipeline_view(ops.tx(), &r)?;
            ops.tx().execute(
                "DELETE FROM pipeline_connections WHERE pipeline_id = $1",
                &[id.as_str().into()],
            )?;
            ops.tx()
                .execute("DELETE FROM pipelines WHERE id = $1", &[id.as_str().into()])?;
            ops.record(ops.event().details(serde_json::json!({"name": view.name})))?;
            Ok(view)
        })
        .await
    }
}
