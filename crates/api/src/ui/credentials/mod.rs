//! Credential screens: the filtered list, the type-driven "New credential" form, the detail
//! page with its actions, and the rotation wizard (stage → test dependents → promote →
//! revoke the old version).

mod detail;
mod edit;
mod list;
mod new;
mod rotate;

use detail::*;
use edit::*;
use list::*;
use new::*;
use rotate::*;

use credvault_domain::problems::Code;
use credvault_domain::states::{CredentialStatus, VersionState};
use std::collections::BTreeSet;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::{Map, Value as Json};

use credvault_core::views::{CreateCredential, CreateVersion, CredentialFilter, CredentialView, VersionMode};
use credvault_core::{CreateReview, ReportKind, ReportRequest, StatusOp};
use credvault_domain::credential_types::{self, CredentialType, FieldKind, FieldSchema, VariantSchema};
use credvault_domain::roles::Permission;

use super::{Form, Html, Session, action_button, check_csrf, csrf_field, error_page, layout, notice, shown, when};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/credentials", get(list))
        .route("/credentials/new", get(new_form).post(create))
        .route("/credentials/{id}", get(detail))
        .route("/credentials/{id}/rotate", get(rotate_form).post(rotate_stage))
        .route("/credentials/{id}/edit", get(edit_form).post(edit_save))
        .route("/credentials/{id}/versions/{n}/promote", post(promote))
        .route("/credentials/{id}/versions/{n}/revoke", post(revoke))
        .route("/credentials/{id}/{op}", post(act))
}

/// Adds `key=value` lines to `labels` (split at the first `=`, so values may hold `=` and
/// `,`); a key already there (set by its own field, or twice) or a line without `=` is
/// refused with a message for the person.
fn parse_labels(text: &str, labels: &mut Map<String, Json>) -> Result<(), String> {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some((k, _)) if labels.contains_key(k) => {
                return Err(format!("`{k}` is given twice (or also by its own field above)"));
            }
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_owned(), Json::String(v.to_owned()));
            }
            _ => return Err(format!("`{line}` is not a key=value line (one label per line)")),
        }
    }
    Ok(())
}

/// Labels as the edit form shows them: one `key=value` per line.
fn labels_lines(l: &Map<String, Json>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A labels text area.
fn labels_input(name: &str, label: &str, value: Option<String>, err: Option<String>, hint: &str) -> Markup {
    let id = format!("in-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            textarea #(id) name=(name) rows="3" spellcheck="false" placeholder=(hint)
                aria-invalid=[err.as_ref().map(|_| "true")] { @if let Some(v) = &value { (v) } }
            @if let Some(e) = err { span.field-error role="alert" { (e) } }
        }
    }
}

fn labels_text(l: &Map<String, Json>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Allowed destinations as a text area holds them: one entry per line.
fn destinations_lines(list: &[String]) -> String {
    list.join("\n")
}

/// The entries of a destinations text area (blank lines and spaces dropped).
fn parse_destination_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The message of the first refused destination entry (`allowed_destinations[i]`), naming
/// its line.
fn destinations_error(err: Option<&super::Shown>) -> Option<String> {
    err.and_then(|e| {
        e.fields.iter().find_map(|(f, m)| {
            let rest = f.strip_prefix("allowed_destinations")?;
            let line = rest
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok());
            Some(match line {
                Some(i) => format!("line {}: {m}", i + 1),
                None => m.clone(),
            })
        })
    })
}

/// The destinations text area of the New credential and Edit forms.
fn destinations_input(value: Option<String>, err: Option<String>) -> Markup {
    html! {
        div.field {
            label for="in-allowed_destinations" { "Allowed destinations" }
            textarea #in-allowed_destinations name="allowed_destinations" rows="3" spellcheck="false"
                aria-describedby="hint-allowed_destinations"
                placeholder="db.example.com:5432\n*.corp.example\n10.0.0.0/8:5432"
                aria-invalid=[err.as_ref().map(|_| "true")] { @if let Some(v) = &value { (v) } }
            span.hint #hint-allowed_destinations {
                "Where the secret may be sent, one per line: a host, *.suffix, an IP address or a CIDR, each with an optional :port. "
                "Connections you wire yourself add their hosts; anyone else can only use this credential with connections that point here."
            }
            @if let Some(e) = err { span.field-error role="alert" { (e) } }
        }
    }
}

fn enabled_types(sess: &Session) -> Vec<CredentialType> {
    sess.settings
        .as_ref()
        .map(|s| s.enabled_types.clone())
        .unwrap_or_default()
}
