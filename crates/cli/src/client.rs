//! A small HTTP client of the credvault API for the CLI. Errors from the server (problem
//! documents) are shown as `code: detail (field)`.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

use crate::config::ClientSettings;

/// Talks to one server with one token.
pub struct Client {
    http: reqwest::Client,
    settings: ClientSettings,
}

impl Client {
    /// A client; fails if no token is configured.
    pub fn new(settings: ClientSettings) -> anyhow::Result<Client> {
        if settings.token.is_none() {
            bail!(
                "no API token: set CREDVAULT_TOKEN, or pass --token-file FILE, or set client.token_file in the config file"
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("credvault-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, settings })
    }

    /// Sends a request and returns the JSON body of a success.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.settings.server, path);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(t) = &self.settings.token {
            req = req.bearer_auth(t.as_str());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.settings.server))?;
        let status = resp.status();
        let text = resp.text().await.context("cannot read the response")?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(json);
        }
        let code = json.get("code").and_then(Value::as_str).unwrap_or("error");
        let detail = json.get("detail").and_then(Value::as_str).unwrap_or("");
        let field = json
            .get("field")
            .and_then(Value::as_str)
            .map(|f| format!(" (field: {f})"))
            .unwrap_or_default();
        bail!("{} {code}: {detail}{field}", status.as_u16())
    }
}

impl Client {
    /// Streams a GET response to a file (with a byte counter on stderr) or to stdout.
    pub async fn download(
        &self,
        path: &str,
        query: &[(&str, String)],
        output: Option<&std::path::Path>,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let url = format!("{}{}", self.settings.server, path);
        let mut req = self
            .http
            .get(&url)
            .query(query)
            .timeout(std::time::Duration::from_secs(3600));
        if let Some(t) = &self.settings.token {
            req = req.bearer_auth(t.as_str());
        }
        let mut resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.settings.server))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let code = v.get("code").and_then(Value::as_str).unwrap_or("error");
            let detail = v.get("detail").and_then(Value::as_str).unwrap_or("");
            bail!("{} {code}: {detail}", status.as_u16());
        }
        let mut sink: Box<dyn Write> = match output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut total: u64 = 0;
        let mut last_report = std::time::Instant::now();
        while let Some(chunk) = resp.chunk().await.context("the download was interrupted")? {
            sink.write_all(&chunk)?;
            total += chunk.len() as u64;
            if output.is_some() && last_report.elapsed() > std::time::Duration::from_millis(500) {
                crate::progress(format_args!("{} written", human_bytes(total)));
                last_report = std::time::Instant::now();
            }
        }
        sink.flush()?;
        if let Some(p) = output {
            crate::progress_done(format_args!("{} written to {}", human_bytes(total), p.display()));
        }
        Ok(())
    }
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Prints a JSON value for humans (pretty) on stdout.
pub fn print(v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    print_line(&text);
}

/// Writes one line to stdout; `false` when the reader has gone away (a closed pipe, as with
/// `| head`), which is not an error worth a panic.
pub fn print_line(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}
