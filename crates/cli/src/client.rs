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

/// Prints a JSON value for humans (pretty) on stdout.
pub fn print(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(_) => println!("{v}"),
    }
}
