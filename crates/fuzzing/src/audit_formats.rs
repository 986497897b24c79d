//! `audit_formats`: the audit sinks' renderings (JSON line, CEF, RFC 5424 syslog) of arbitrary
//! events.
//!
//! Input: the event's fields separated by `0x1e`, in this order: `seq`, `at` (an integer is
//! taken as microseconds and rendered as the server would, anything else is used as is),
//! `actor_id`, `actor_kind`, `action`, `target_type`, `target_id`, `org_id`, `workspace_id`,
//! `outcome`, `source_ip`, `user_agent`, `request_id`, `details` (JSON, else a string),
//! `prev_hash`, `hash`, then the syslog HOSTNAME, APP-NAME and a free MSG. Missing or empty
//! optional fields are `None`.
//!
//! Promises checked:
//! * the JSON line is one line and parses back to the event (floats to 12 digits);
//! * the CEF line is one line, its header has the seven `|`-separated fields with the action as
//!   signature and name, and its extension parses (unescaped `=` only after a key) back to the
//!   event's values;
//! * a syslog message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG` whatever the
//!   event, host or app name: every header field non-empty printable US-ASCII within RFC 5424's
//!   lengths (the timestamp RFC 3339 or `-`), and the MSG exactly the one given; with a JSON or
//!   CEF MSG (what the sinks send) the whole message is one line.

use serde_json::Value;

use credvault_core::audit::Event;
use credvault_core::forward::{cef, json_line, syslog_5424};
use credvault_domain::time::{parse_rfc3339, to_rfc3339};

/// The entry point.
pub fn run(data: &[u8]) {
    let parts: Vec<String> = data
        .split(|b| *b == 0x1e)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let text = |i: usize| parts.get(i).cloned().unwrap_or_default();
    let opt = |i: usize| parts.get(i).filter(|s| !s.is_empty()).cloned();
    let seq_text = text(0);
    let seq = seq_text.trim().parse::<i64>().unwrap_or_else(|_| {
        seq_text
            .bytes()
            .fold(0i64, |acc, b| acc.wrapping_mul(31).wrapping_add(i64::from(b)))
    });
    let at = match parts.get(1) {
        Some(t) => t.trim().parse::<i64>().map(to_rfc3339).unwrap_or_else(|_| t.clone()),
        None => to_rfc3339(0),
    };
    let details_text = text(13);
    let details = serde_json::from_str::<Value>(&details_text).unwrap_or(Value::String(details_text));
    let e = Event {
        chain: None,
        seq,
        at,
        actor_id: opt(2),
        actor_kind: text(3),
        action: text(4),
        target_type: opt(5),
        target_id: opt(6),
        org_id: opt(7),
        workspace_id: opt(8),
        outcome: text(9),
        source_ip: opt(10),
        user_agent: opt(11),
        request_id: opt(12),
        details,
        prev_hash: text(14),
        hash: text(15),
    };
    let host = parts.get(16).cloned().unwrap_or_else(|| "host.example".into());
    let app = parts.get(17).cloned().unwrap_or_else(|| "credvault".into());
    let free_msg = text(18);

    let json = json_line(&e);
    check_json(&e, &json);
    let cef_line = cef(&e);
    check_cef(&e, &cef_line);
    for msg in [&json, &cef_line] {
        let out = syslog_5424(&e, &host, &app, msg);
        assert!(
            !out.contains(['\r', '\n']),
            "a syslog message with a one-line MSG spans lines: {out:?}"
        );
        check_syslog(&out, msg);
    }
    check_syslog(&syslog_5424(&e, &host, &app, &free_msg), &free_msg);
}

fn check_json(e: &Event, line: &str) {
    assert!(!line.contains(['\r', '\n']), "the JSON line spans lines: {line:?}");
    let back: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(err) => panic!("the JSON line does not parse ({err}): {line:?}"),
    };
    let want = match serde_json::to_value(e) {
        Ok(v) => v,
        Err(err) => panic!("the event does not serialize: {err}"),
    };
    assert_eq!(
        floats_rounded(back),
        floats_rounded(want),
        "the JSON line does not read back as the event"
    );
}

/// Numbers that are neither `i64` nor `u64` rounded to 12 significant digits: serde_json (without
/// its `float_roundtrip` feature) may read a float back one unit in the last place off.
fn floats_rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => {
            Value::String(format!("{:.11e}", n.as_f64().unwrap_or_default()))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(floats_rounded).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, floats_rounded(x))).collect()),
        other => other,
    }
}

/// Splits at unescaped `sep` (a backslash escapes the next character).
fn split_unescaped(s: &str, sep: char, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if out.len() + 1 == max {
            break;
        }
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Undoes CEF escaping: `\\`, `\|` (header), `\=`, `\r`, `\n` (extension). Any other backslash
/// sequence is a formatter bug.
fn unescape(s: &str, header: bool, line: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match (chars.next(), header) {
            (Some('\\'), _) => out.push('\\'),
            (Some('|'), true) => out.push('|'),
            (Some('='), false) => out.push('='),
            (Some('r'), false) => out.push('\r'),
            (Some('n'), false) => out.push('\n'),
            (other, _) => panic!("CEF: stray escape \\{other:?} in {s:?} of {line:?}"),
        }
    }
    out
}

fn check_cef(e: &Event, line: &str) {
    assert!(!line.contains(['\r', '\n']), "the CEF line spans lines: {line:?}");
    let fields = split_unescaped(line, '|', 8);
    assert_eq!(
        fields.len(),
        8,
        "CEF: not seven header fields and an extension: {line:?}"
    );
    assert_eq!(fields[0], "CEF:0");
    assert_eq!(fields[1], "credvault");
    assert_eq!(fields[2], "credvault");
    let action_shown = e.action.replace(['\r', '\n'], " ");
    assert_eq!(unescape(fields[4], true, line), action_shown, "CEF: signature ID");
    assert_eq!(unescape(fields[5], true, line), action_shown, "CEF: name");
    assert!(
        fields[6].parse::<u8>().is_ok_and(|s| s <= 10),
        "CEF: severity {:?}",
        fields[6]
    );

    // The extension: `key=value` pairs separated by single spaces; a value holds no unescaped
    // `=`, so every unescaped `=` ends a key, which starts after the space before it.
    let ext = fields[7];
    let mut eqs = Vec::new();
    let mut escaped = false;
    for (i, c) in ext.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' {
            eqs.push(i);
        }
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let mut key_starts = Vec::new();
    for &eq in &eqs {
        let start = ext[..eq].rfind(' ').map_or(0, |p| p + 1);
        let key = &ext[start..eq];
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric()),
            "CEF: {key:?} before an unescaped '=' is not a key: {line:?}"
        );
        key_starts.push((start, eq));
    }
    for (n, &(start, eq)) in key_starts.iter().enumerate() {
        let end = key_starts.get(n + 1).map_or(ext.len(), |&(next, _)| next - 1);
        assert!(n > 0 || start == 0, "CEF: text before the first key: {line:?}");
        pairs.push((&ext[start..eq], unescape(&ext[eq + 1..end], false, line)));
    }
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
    assert_eq!(get("externalId"), Some(e.seq.to_string().as_str()), "CEF: externalId");
    assert_eq!(get("act"), Some(e.action.as_str()), "CEF: act");
    assert_eq!(get("outcome"), Some(e.outcome.as_str()), "CEF: outcome");
    assert_eq!(get("suser"), e.actor_id.as_deref(), "CEF: suser");
    assert_eq!(get("cs1"), Some(e.org_id.as_deref().unwrap_or_default()), "CEF: cs1");
    assert_eq!(get("cs2"), e.workspace_id.as_deref(), "CEF: cs2");
    assert_eq!(get("cs4"), e.request_id.as_deref(), "CEF: cs4");
    assert_eq!(get("src"), e.source_ip.as_deref(), "CEF: src");
    assert_eq!(get("requestClientApplication"), e.user_agent.as_deref(), "CEF: UA");
    assert_eq!(get("cs5"), Some(e.hash.as_str()), "CEF: cs5");
    assert_eq!(get("msg"), Some(e.details.to_string().as_str()), "CEF: msg");
    if let Some(t) = &e.target_id {
        let want = format!("{}:{t}", e.target_type.as_deref().unwrap_or_default());
        assert_eq!(get("cs3"), Some(want.as_str()), "CEF: cs3");
    }
    assert!(get("rt").is_some_and(|rt| rt.parse::<i64>().is_ok()), "CEF: rt");
}

/// RFC 5424's TIMESTAMP: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1 to 6 digits, `Z` or
/// `±HH:MM` (upper case `T` and `Z`), and a valid instant.
fn syslog_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date_time = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_time {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=6).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    let offset = rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest
                .bytes()
                .enumerate()
                .all(|(i, c)| i == 0 || i == 3 || c.is_ascii_digit()));
    offset && parse_rfc3339(s).is_some()
}

/// RFC 5424 PRINTUSASCII, 1 to `max` characters.
fn header_field(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

fn check_syslog(out: &str, msg: &str) {
    let f: Vec<&str> = out.splitn(8, ' ').collect();
    assert_eq!(f.len(), 8, "syslog: not a full RFC 5424 header: {out:?}");
    let pri_ok = f[0]
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix(">1"))
        .and_then(|p| p.parse::<u8>().ok())
        .is_some_and(|p| p <= 191);
    assert!(pri_ok, "syslog: PRI/VERSION {:?} in {out:?}", f[0]);
    assert!(
        f[1] == "-" || syslog_timestamp(f[1]),
        "syslog: TIMESTAMP {:?} in {out:?}",
        f[1]
    );
    assert!(header_field(f[2], 255), "syslog: HOSTNAME {:?} in {out:?}", f[2]);
    assert!(header_field(f[3], 48), "syslog: APP-NAME {:?} in {out:?}", f[3]);
    assert!(header_field(f[4], 128), "syslog: PROCID {:?} in {out:?}", f[4]);
    assert!(header_field(f[5], 32), "syslog: MSGID {:?} in {out:?}", f[5]);
    assert_eq!(f[6], "-", "syslog: STRUCTURED-DATA in {out:?}");
    assert_eq!(f[7], msg, "syslog: MSG differs");
}
