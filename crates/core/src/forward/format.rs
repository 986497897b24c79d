//! Renderings of an audit event for sinks: JSON lines, CEF (ArcSight Common Event Format) and
//! RFC 5424 syslog framing. Every rendering carries the sequence number so a receiver can
//! de-duplicate (delivery is at least once).

use crate::audit::Event;

/// JSON, one line.
pub fn json_line(e: &Event) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| format!("{{\"seq\":{}}}", e.seq))
}

fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// CEF severity: 0–10.
fn severity(e: &Event) -> u8 {
    if e.action.starts_with("alert.") {
        8
    } else if e.outcome == "denied" || e.action == "auth.failure" {
        6
    } else if e.outcome == "error" {
        5
    } else {
        3
    }
}

/// The event as one CEF line.
pub fn cef(e: &Event) -> String {
    let at_ms = credvault_domain::time::parse_rfc3339(&e.at)
        .map(|us| us / 1000)
        .unwrap_or(0);
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", at_ms.to_string()),
        ("externalId", e.seq.to_string()),
        ("act", e.action.clone()),
        ("outcome", e.outcome.clone()),
    ];
    if let Some(a) = &e.actor_id {
        ext.push(("suser", a.clone()));
    }
    ext.push(("cs1Label", "org_id".into()));
    ext.push(("cs1", e.org_id.clone().unwrap_or_default()));
    if let Some(w) = &e.workspace_id {
        ext.push(("cs2Label", "workspace_id".into()));
        ext.push(("cs2", w.clone()));
    }
    if let Some(t) = &e.target_id {
        ext.push(("cs3Label", "target".into()));
        ext.push(("cs3", format!("{}:{t}", e.target_type.clone().unwrap_or_default())));
    }
    if let Some(r) = &e.request_id {
        ext.push(("cs4Label", "request_id".into()));
        ext.push(("cs4", r.clone()));
    }
    if let Some(ip) = &e.source_ip {
        ext.push(("src", ip.clone()));
    }
    if let Some(ua) = &e.user_agent {
        ext.push(("requestClientApplication", ua.clone()));
    }
    ext.push(("cs5Label", "hash".into()));
    ext.push(("cs5", e.hash.clone()));
    ext.push(("msg", e.details.to_string()));
    let ext = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", cef_value(v)))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "CEF:0|credvault|credvault|{}|{}|{}|{}|{ext}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&e.action),
        cef_header(&e.action),
        severity(e)
    )
}

/// Syslog severity for the event (RFC 5424: 1 alert, 4 warning, 5 notice).
fn syslog_severity(e: &Event) -> u8 {
    if e.action.starts_with("alert.") {
        1
    } else if e.outcome == "success" {
        5
    } else {
        4
    }
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP - MSGID - MSG` (facility authpriv). Each
/// header field is printable US-ASCII within RFC 5424's length, or `-` (NILVALUE) when nothing
/// of it is left (a timestamp that is not RFC 3339), so no host, app name (from the config
/// file), action or timestamp can shift, split or break the header.
pub fn syslog_5424(e: &Event, host: &str, app: &str, msg: &str) -> String {
    let pri = 10 * 8 + u16::from(syslog_severity(e));
    // RFC 5424 allows at most six digits of fraction: the instant as the server writes it.
    let at =
        credvault_domain::time::parse_rfc3339(&e.at).map_or_else(|| "-".into(), credvault_domain::time::to_rfc3339);
    format!(
        "<{pri}>1 {at} {} {} - {} - {msg}",
        header_field(host, 255),
        header_field(app, 48),
        header_field(&e.action, 32)
    )
}

/// A syslog header field: its printable US-ASCII characters (no space), at most `max`; `-` if
/// none.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if f.is_empty() { "-".into() } else { f }
}

/// The host name for syslog headers.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(255)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            chain: None,
            seq: 7,
            at: "2026-01-02T03:04:05.000006Z".into(),
            actor_id: Some("usr_x".into()),
            actor_kind: "user".into(),
            action: "credential.create".into(),
            target_type: Some("credential".into()),
            target_id: Some("cred_y".into()),
            org_id: Some("org_z".into()),
            workspace_id: None,
            outcome: "success".into(),
            source_ip: Some("127.0.0.1".into()),
            user_agent: Some("a=b|c".into()),
            request_id: None,
            details: serde_json::json!({"name": "x=y"}),
            prev_hash: "00".into(),
            hash: "ab".into(),
        }
    }

    #[test]
    fn cef_escapes_separators_and_carries_the_sequence() {
        let line = cef(&event());
        assert!(line.starts_with("CEF:0|credvault|credvault|"));
        assert!(line.contains("|credential.create|credential.create|3|"));
        assert!(line.contains("externalId=7"));
        assert!(line.contains("requestClientApplication=a\\=b|c"));
        assert!(line.contains("msg={\"name\":\"x\\=y\"}"));
    }

    #[test]
    fn syslog_frames_have_priority_version_and_msgid() {
        let m = syslog_5424(&event(), "host1", "credvault", "hello");
        assert!(
            m.starts_with("<85>1 2026-01-02T03:04:05.000006Z host1 credvault - credential.create - hello"),
            "{m}"
        );
        // Caught by the audit_formats fuzz target: an app name with a space, an empty host or
        // action, a timestamp that is not one (or has more than six digits of fraction) shifted,
        // emptied or broke header fields.
        let mut e = event();
        e.action = String::new();
        e.at = "not a time".into();
        let m = syslog_5424(&e, "", "my app", "hello");
        assert_eq!(m, "<85>1 - - myapp - - - hello");
    }
}
