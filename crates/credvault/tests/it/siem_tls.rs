//! Audit forwarding over TLS, against receivers in this file that terminate real TLS
//! (tokio-rustls) with a certificate chain made by the `openssl` command line for each test:
//!
//! - an HTTPS webhook receiver that verifies the `x-credvault-signature` HMAC-SHA256 of every
//!   body; the sink trusts the test CA through `ca_file`;
//! - a syslog receiver over TCP+TLS (RFC 5425 octet counting) reading RFC 5424 messages;
//! - a sink whose `ca_file` names another CA delivers nothing, reports the certificate error
//!   in `/readyz`, and loses nothing: pointed at the right CA after a restart, every event
//!   arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tls::{Pki, acceptor, pki};
use common::{Backend, Server, TempDir};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct Received {
    /// Sequence numbers of the events received with a valid signature, in arrival order.
    seqs: Vec<i64>,
    /// Actions, in arrival order.
    actions: Vec<String>,
    /// Requests with a missing or wrong signature.
    bad_signatures: usize,
    /// TLS handshakes that failed.
    failed_handshakes: usize,
}

/// An HTTPS webhook receiver on 127.0.0.1.
async fn https_hook(pki: &Pki, secret: Vec<u8>) -> (u16, Arc<Mutex<Received>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Received::default()));
    let (acc, g) = (acceptor(pki), got.clone());
    let secret = Arc::new(secret);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { break };
            let (acc, g, secret) = (acc.clone(), g.clone(), secret.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acc.accept(tcp).await else {
                    g.lock().unwrap().failed_handshakes += 1;
                    return;
                };
                let mut buf = Vec::new();
                let mut tmp = vec![0u8; 64 * 1024];
                loop {
                    let head_end = loop {
                        if let Some(p) = find(&buf, b"\r\n\r\n") {
                            break p;
                        }
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let headers: BTreeMap<String, String> = head
                        .split("\r\n")
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    while buf.len() < head_end + 4 + len {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let body: Vec<u8> = buf[head_end + 4..head_end + 4 + len].to_vec();
                    buf.drain(..head_end + 4 + len);
                    let ok =
                        headers.get("x-credvault-signature") == Some(&format!("sha256={}", hmac_hex(&secret, &body)));
                    let status = {
                        let mut r = g.lock().unwrap();
                        if ok {
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            for e in v["events"].as_array().unwrap() {
                                r.seqs.push(e["seq"].as_i64().unwrap());
                                r.actions.push(e["action"].as_str().unwrap().to_owned());
                            }
                            "200 OK"
                        } else {
                            r.bad_signatures += 1;
                            "401 Unauthorized"
                        }
                    };
                    let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

/// Reads RFC 5425 frames (`LEN SP MSG`) from a stream until it ends.
async fn read_frames(mut s: impl AsyncRead + Unpin, out: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 16 * 1024];
    loop {
        // Parse every complete frame in the buffer.
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            out.lock()
                .unwrap()
                .push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("credvault.toml");
    std::fs::write(&path, format!("scheduler_interval_secs = 0\n\n{body}")).unwrap();
    path
}

fn toml_str(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).unwrap()
}

async fn start(b: Backend, cfg: &Path) -> Server {
    let cfg = cfg.to_string_lossy().into_owned();
    Server::start_with(b, &["--config", cfg.as_str()]).await
}

/// Creates `n` credentials and returns the sequence numbers of their `credential.create` events.
async fn create_credentials(srv: &Server, tag: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let c = srv
            .database_credential(&srv.admin, &format!("{tag}-{i}"), "tls-test-pw")
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let events = srv
        .get(
            &format!("/v1/audit?action=credential.create&org_id={}&limit=500", srv.org_id),
            &srv.admin,
        )
        .await
        .ok(200);
    let mut seqs: Vec<i64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| ids.iter().any(|id| e["target_id"].as_str() == Some(id)))
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs.len(), n, "the journal holds every credential.create: {events}");
    seqs
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> Option<String>) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        match done() {
            None => return,
            Some(detail) if Instant::now() > until => panic!("timed out waiting for {what}: {detail}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn https_webhook_delivers_signed_batches(b: Backend) {
    let dir = TempDir::new();
    let pki = pki(dir.path(), "hook");
    let secret = b"tls-webhook-secret".to_vec();
    std::fs::write(dir.path().join("hook.key"), &secret).unwrap();
    let (port, got) = https_hook(&pki, secret).await;
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"https\"\nkind = \"webhook\"\nurl = \"https://127.0.0.1:{port}/hook\"\nca_file = {}\nhmac_secret_file = {}\n",
            toml_str(&pki.ca_pem),
            toml_str(&dir.path().join("hook.key"))
        ),
    );
    let srv = start(b, &cfg).await;
    let want = create_credentials(&srv, "https", 5).await;
    wait_for("the HTTPS webhook to receive every credential.create", 30, || {
        let r = got.lock().unwrap();
        let missing: Vec<_> = want.iter().filter(|s| !r.seqs.contains(s)).collect();
        (!missing.is_empty()).then(|| format!("missing {missing:?}, got {:?}", r.seqs))
    })
    .await;
    let r = got.lock().unwrap();
    assert_eq!(r.bad_signatures, 0, "every body is signed with the shared secret");
    assert_eq!(r.failed_handshakes, 0);
    assert!(r.seqs.windows(2).all(|w| w[0] < w[1]), "in order: {:?}", r.seqs);
    assert!(
        r.actions.iter().any(|a| a == "instance.init"),
        "the journal from its start: {:?}",
        r.actions
    );
}

#[tokio::test]
async fn an_https_webhook_trusting_the_test_ca_receives_every_event_signed_and_in_order() {
    for b in common::backends() {
        https_webhook_delivers_signed_batches(b).await;
    }
}

async fn syslog_tls_delivers(b: Backend) {
    let dir = TempDir::new();
    let pki = pki(dir.path(), "syslog");
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (acc, out) = (acceptor(&pki), lines.clone());
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { break };
            let (acc, out) = (acc.clone(), out.clone());
            tokio::spawn(async move {
                if let Ok(s) = acc.accept(tcp).await {
                    read_frames(s, out).await;
                }
            });
        }
    });
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"tls\"\nkind = \"syslog\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{port}\"\nca_file = {}\nformat = \"cef\"\n",
            toml_str(&pki.ca_pem)
        ),
    );
    let srv = start(b, &cfg).await;
    let want = create_credentials(&srv, "tls", 3).await;
    wait_for("syslog over TLS to carry every credential.create", 30, || {
        let got = lines.lock().unwrap();
        let missing: Vec<_> = want
            .iter()
            .filter(|s| {
                !got.iter()
                    .any(|l| l.contains("credential.create") && l.contains(&format!("externalId={s}")))
            })
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "missing {missing:?} in {:?}",
                got.iter().rev().take(3).collect::<Vec<_>>()
            )
        })
    })
    .await;
    for line in lines.lock().unwrap().iter() {
        // RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG, the MSG in CEF.
        assert!(
            line.starts_with('<') && line.contains(">1 "),
            "an RFC 5424 header: {line}"
        );
        assert!(line.contains("CEF:0|"), "CEF body: {line}");
        assert!(!line.contains("tls-test-pw"), "no secret in a syslog line");
    }
    server.abort();
}

#[tokio::test]
async fn syslog_over_tls_carries_rfc5424_cef_records_to_a_receiver_trusting_only_the_test_ca() {
    for b in common::backends() {
        syslog_tls_delivers(b).await;
    }
}

async fn wrong_ca_delivers_nothing_and_loses_nothing(b: Backend) {
    let dir = TempDir::new();
    let right = pki(dir.path(), "right");
    let wrong = pki(dir.path(), "wrong");
    let secret = b"another-secret".to_vec();
    std::fs::write(dir.path().join("hook.key"), &secret).unwrap();
    let (port, got) = https_hook(&right, secret).await;
    let sink = |ca: &Path| {
        format!(
            "[[audit_sinks]]\nname = \"pinned\"\nkind = \"webhook\"\nurl = \"https://127.0.0.1:{port}/hook\"\nca_file = {}\nhmac_secret_file = {}\n",
            toml_str(ca),
            toml_str(&dir.path().join("hook.key"))
        )
    };
    let cfg = write_config(dir.path(), &sink(&wrong.ca_pem));
    let srv = start(b, &cfg).await;
    let want = create_credentials(&srv, "pinned", 3).await;
    // The sink reports why it cannot deliver, and nothing reaches the receiver.
    let until = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let r = srv.get("/v1/audit/sinks", &srv.admin).await;
        let h = r.body["audit_sinks"]["pinned"].clone();
        if h["last_error"].is_string() && h["backlog"].as_i64().unwrap_or(0) >= 3 {
            break h;
        }
        assert!(Instant::now() < until, "the sink never reported an error: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let err = health["last_error"].as_str().unwrap();
    assert!(
        err.to_ascii_lowercase().contains("certificate"),
        "the error names the certificate problem: {err}"
    );
    {
        let r = got.lock().unwrap();
        assert!(
            r.seqs.is_empty(),
            "nothing is delivered over an unverified connection: {:?}",
            r.seqs
        );
        assert!(r.failed_handshakes > 0, "the server refused the receiver's certificate");
    }
    // With the right CA, everything that waited arrives.
    std::fs::write(&cfg, format!("scheduler_interval_secs = 0\n\n{}", sink(&right.ca_pem))).unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let srv = srv.restart(&["--config", cfg_s.as_str()], &[]).await;
    wait_for("the waiting events after the CA was fixed", 40, || {
        let r = got.lock().unwrap();
        let missing: Vec<_> = want.iter().filter(|s| !r.seqs.contains(s)).collect();
        (!missing.is_empty()).then(|| format!("missing {missing:?}, got {:?}", r.seqs))
    })
    .await;
    drop(srv);
}

#[tokio::test]
async fn a_webhook_whose_certificate_does_not_chain_to_ca_file_gets_nothing_and_nothing_is_lost() {
    for b in common::backends() {
        wrong_ca_delivers_nothing_and_loses_nothing(b).await;
    }
}
