//! `audit export`: the journal as JSON lines, with or without the server.

use super::*;

pub(super) async fn export_audit(
    cl: &Client,
    format: &str,
    since: Option<String>,
    org: Option<String>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    const COLS: [&str; 15] = [
        "seq",
        "at",
        "org_id",
        "workspace_id",
        "actor_id",
        "actor_kind",
        "action",
        "target_type",
        "target_id",
        "outcome",
        "source_ip",
        "user_agent",
        "request_id",
        "details",
        "hash",
    ];
    if format != "jsonl" && format != "csv" {
        bail!("--format must be jsonl or csv");
    }
    let mut sink: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    if format == "csv" {
        writeln!(sink, "{}", COLS.join(","))?;
    }
    let mut after: Option<i64> = None;
    let mut n = 0u64;
    loop {
        let mut q: Vec<(&str, String)> = vec![("limit", "500".into())];
        if let Some(s) = &since {
            q.push(("since", s.clone()));
        }
        if let Some(o) = &org {
            q.push(("org_id", o.clone()));
        }
        if let Some(a) = after {
            q.push(("after_seq", a.to_string()));
        }
        let page = cl.call(Method::GET, "/v1/audit", &q, None).await?;
        let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        for e in &items {
            if format == "jsonl" {
                writeln!(sink, "{e}")?;
            } else {
                let cells: Vec<String> = COLS
                    .iter()
                    .map(|c| {
                        let v = match e.get(*c) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        };
                        let v = if v.starts_with(['=', '+', '-', '@']) {
                            format!("'{v}")
                        } else {
                            v
                        };
                        if v.contains([',', '"', '\n', '\r']) {
                            format!("\"{}\"", v.replace('"', "\"\""))
                        } else {
                            v
                        }
                    })
                    .collect();
                write!(sink, "{}\r\n", cells.join(","))?;
            }
            after = e.get("seq").and_then(Value::as_i64).or(after);
            n += 1;
        }
        if output.is_some() {
            crate::progress(format_args!("exported {n} events"));
        }
        if items.len() < 500 {
            break;
        }
    }
    sink.flush()?;
    if output.is_some() {
        crate::progress_done(format_args!("exported {n} events"));
    }
    Ok(())
}
