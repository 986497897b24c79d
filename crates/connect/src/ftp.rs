//! FTP (and explicit FTPS): open the control connection through the egress policy, optionally
//! upgrade it with `AUTH TLS` (rustls), log in with a `password` credential, run `PWD`, `QUIT`.
//!
//! The policy opens the TCP connection (`EgressPolicy::connect`: one resolution, every address
//! checked, connected to exactly a checked address); nothing else resolves or dials the user's
//! host. No data connection is opened — the check needs none, and a `PASV` answer names an
//! address of the server's choosing that would have to go through the policy as well — so the
//! `passive` setting does not change the test.
//!
//! The control conversation (a handful of RFC 959 commands) is spoken here rather than through
//! suppaftp: suppaftp logs every command it sends at `trace` level, `PASS` with the password
//! included, and the server bridges `log` records into its own logs. Here the `PASS` line lives
//! in a zeroizing buffer and is never logged; user names and passwords containing CR, LF or NUL
//! are refused (they would inject commands). TLS comes from `tokio_rustls` directly.
//!
//! TLS verifies the server's certificate against the user's host name (or IP literal) with the
//! trust store of the machine (`SSL_CERT_FILE` / `SSL_CERT_DIR`, as OpenSSL and reqwest read
//! them, else the system bundle); see [`crate::tls::tls_config`].

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls};
use zeroize::Zeroizing;

use crate::{EgressPolicy, ErrorCode, TestError, TestInput, Tester};

pub(crate) struct Ftp;

/// The most a reply (all its lines) may take.
const MAX_REPLY: usize = 16 * 1024;

/// One server reply: its code and its text on one line.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

/// Why the control conversation broke off (before it is put in words for a step).
#[derive(Debug)]
enum Failure {
    /// The server answered with a code the step does not accept.
    Reply(Reply),
    /// What came back is not an FTP reply.
    NotFtp,
    /// The connection failed or closed.
    Io(std::io::ErrorKind),
    /// The TLS handshake failed.
    Tls(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls) => Failure::Tls(tls.to_string()),
            None => Failure::Io(e.kind()),
        }
    }
}

/// The text of a reply, on one line and bounded.
fn reply_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut one: String = text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if one.len() > 200 {
        let mut cut = 200;
        while !one.is_char_boundary(cut) {
            cut -= 1;
        }
        one.truncate(cut);
        one.push('…');
    }
    one
}

/// The reply code at the start of a line (`"230 ok"`, `"230-"`, `"230"`), if it is one.
fn line_code(line: &[u8]) -> Option<(u16, Option<u8>)> {
    let digits = line.get(..3)?;
    if !(b'1'..=b'5').contains(&digits[0]) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None | Some(b'\r' | b'\n') => Some((code, None)),
        Some(&sep @ (b' ' | b'-')) => Some((code, Some(sep))),
        Some(_) => None,
    }
}

/// The control connection.
struct Control<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Control<S> {
    fn new(io: S) -> Control<S> {
        Control { io: BufReader::new(io) }
    }

    /// Reads one reply, multi-line ones (`123-` … `123 `) included.
    async fn reply(&mut self) -> Result<Reply, Failure> {
        let mut all = Vec::new();
        let mut line = Vec::new();
        let mut first: Option<u16> = None;
        loop {
            line.clear();
            let n = (&mut self.io)
                .take((MAX_REPLY + 1 - all.len()) as u64)
                .read_until(b'\n', &mut line)
                .await?;
            if n == 0 {
                return Err(if all.is_empty() {
                    Failure::Io(std::io::ErrorKind::UnexpectedEof)
                } else {
                    Failure::NotFtp
                });
            }
            all.extend_from_slice(&line);
            if all.len() > MAX_REPLY || !line.ends_with(b"\n") {
                return Err(Failure::NotFtp);
            }
            match (first, line_code(&line)) {
                (None, Some((code, Some(b'-')))) => first = Some(code),
                (None, Some((code, _))) => {
                    return Ok(Reply {
                        code,
                        text: reply_text(&all),
                    });
                }
                (None, None) => return Err(Failure::NotFtp),
                // The last line of a multi-line reply repeats the code followed by a space.
                (Some(code), Some((c, sep))) if c == code && sep != Some(b'-') => {
                    return Ok(Reply {
                        code,
                        text: reply_text(&all),
                    });
                }
                (Some(_), _) => {}
            }
        }
    }

    /// Sends one command line (CRLF added).
    async fn send(&mut self, line: &[u8]) -> Result<(), Failure> {
        let mut out = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        let io = self.io.get_mut();
        io.write_all(&out).await?;
        io.flush().await?;
        Ok(())
    }

    /// Sends a command and reads its reply.
    async fn command(&mut self, line: &[u8]) -> Result<Reply, Failure> {
        self.send(line).await?;
        self.reply().await
    }

    fn into_inner(self) -> Result<S, Failure> {
        // Bytes after the reply to AUTH TLS would be a server speaking before the handshake.
        if !self.io.buffer().is_empty() {
            return Err(Failure::NotFtp);
        }
        Ok(self.io.into_inner())
    }
}

/// Which step of the conversation failed, for the message and the code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Greeting,
    AuthTls,
    Login,
    Pwd,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::AuthTls => "AUTH TLS",
            Step::Login => "login",
            Step::Pwd => "PWD",
        }
    }
}

fn classify(step: Step, f: Failure) -> TestError {
    match f {
        Failure::Reply(Reply { code, text }) => {
            let lower = text.to_ascii_lowercase();
            let kind = match (step, code) {
                (Step::AuthTls, _) => {
                    return TestError::new(
                        ErrorCode::Tls,
                        format!("the server refused explicit TLS (AUTH TLS): {text}"),
                    );
                }
                // vsftpd and others refuse a cleartext login when they require TLS with 530
                // (or 534/550 elsewhere) and say so.
                (Step::Login, 530 | 534 | 550)
                    if ["encrypt", "tls", "ssl", "secure"].iter().any(|w| lower.contains(w)) =>
                {
                    return TestError::new(
                        ErrorCode::Tls,
                        format!("the server requires TLS before login (set tls to explicit): {text}"),
                    );
                }
                (Step::Login, 530) => ErrorCode::AuthFailed,
                (Step::Login, 332 | 532) => {
                    return TestError::new(
                        ErrorCode::Unsupported,
                        format!("the server wants an FTP account (ACCT) besides the password: {text}"),
                    );
                }
                (Step::Pwd, 550) => ErrorCode::PermissionDenied,
                _ => ErrorCode::UnexpectedResponse,
            };
            let message = if text.is_empty() {
                format!("the server answered the {} with {code}", step.what())
            } else {
                format!("the server answered the {} with: {text}", step.what())
            };
            TestError::new(kind, message)
        }
        Failure::Tls(m) => TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {m}")),
        Failure::NotFtp => TestError::new(
            ErrorCode::UnexpectedResponse,
            format!("the server's answer to the {} is not an FTP reply", step.what()),
        ),
        Failure::Io(std::io::ErrorKind::TimedOut) => {
            TestError::new(ErrorCode::Timeout, "the FTP server did not answer in time")
        }
        Failure::Io(kind) => match step {
            Step::Greeting => TestError::new(
                ErrorCode::UnexpectedResponse,
                format!("the server did not greet like an FTP server ({kind})"),
            ),
            Step::AuthTls => TestError::new(
                ErrorCode::Tls,
                format!("the connection failed while setting up TLS ({kind})"),
            ),
            Step::Login | Step::Pwd => TestError::new(
                ErrorCode::UnexpectedResponse,
                format!("the server closed the connection during the {} ({kind})", step.what()),
            ),
        },
    }
}

/// Expects one of `ok` as the reply code.
fn expect(r: Reply, ok: &[u16]) -> Result<Reply, Failure> {
    if ok.contains(&r.code) {
        Ok(r)
    } else {
        Err(Failure::Reply(r))
    }
}

/// Reads the greeting (waiting out `120 ready in n minutes`).
async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(ctl: &mut Control<S>) -> Result<(), Failure> {
    loop {
        let r = ctl.reply().await?;
        if r.code != 120 {
            return expect(r, &[220]).map(|_| ());
        }
    }
}

/// USER, PASS if asked, PWD, QUIT.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    ctl: &mut Control<S>,
    user: &str,
    password: &str,
) -> Result<(), TestError> {
    let login = async {
        let r = ctl.command(format!("USER {user}").as_bytes()).await?;
        let r = expect(r, &[230, 331])?;
        if r.code == 331 {
            let mut pass = Zeroizing::new(Vec::with_capacity(password.len() + 5));
            pass.extend_from_slice(b"PASS ");
            pass.extend_from_slice(password.as_bytes());
            let r = ctl.command(&pass).await?;
            expect(r, &[230, 202])?;
        }
        Ok::<(), Failure>(())
    };
    login.await.map_err(|f| classify(Step::Login, f))?;
    let r = ctl.command(b"PWD").await.map_err(|f| classify(Step::Pwd, f))?;
    expect(r, &[257]).map_err(|f| classify(Step::Pwd, f))?;
    // The check is done; a server that drops the connection on QUIT is fine.
    let _ = ctl.command(b"QUIT").await;
    Ok(())
}

/// The TLS server name for the user's host (brackets off an IPv6 literal).
impl Tester for Ftp {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "password" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "only password credentials can be tested against FTP",
                ));
            }
            let Some(user) = input.field("username").filter(|u| !u.is_empty()) else {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "this credential has no username; an FTP login needs one",
                ));
            };
            let password = input.field("password").unwrap_or_default();
            if [user, password]
                .iter()
                .any(|s| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)))
            {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "the username or password contains a line break or NUL, which FTP cannot send",
                ));
            }
            let explicit = match input.config_str("tls").unwrap_or("none") {
                "none" => false,
                "explicit" => true,
                other => {
                    return Err(TestError::new(
                        ErrorCode::Unsupported,
                        format!("FTP tls mode `{other}` is not supported (none or explicit)"),
                    ));
                }
            };
            let host = input.config_str("host").unwrap_or_default();
            let port = input
                .config_int("port")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(21);
            // Built before connecting: a machine without a trust store, or a host TLS cannot
            // verify, fails without a socket.
            let tls = if explicit {
                Some((crate::tls::tls_config()?, crate::tls::server_name(host)?))
            } else {
                None
            };

            let stream = policy.connect(host, port).await?;
            let mut ctl = Control::new(stream);
            match tokio::time::timeout(policy.connect_timeout, greeting(&mut ctl)).await {
                Ok(r) => r.map_err(|f| classify(Step::Greeting, f))?,
                Err(_) => {
                    return Err(TestError::new(
                        ErrorCode::Timeout,
                        "the server sent no FTP greeting in time",
                    ));
                }
            }
            let Some((config, name)) = tls else {
                return session(&mut ctl, user, password).await;
            };
            // AUTH TLS, then the handshake on the same socket; the certificate is checked
            // against the name the user gave, not against the address it resolved to.
            let upgrade = async {
                let r = ctl.command(b"AUTH TLS").await?;
                expect(r, &[234])?;
                let tcp: TcpStream = ctl.into_inner()?;
                Ok::<_, Failure>(TlsConnector::from(config).connect(name, tcp).await?)
            };
            let tls_stream = upgrade.await.map_err(|f| classify(Step::AuthTls, f))?;
            session(&mut Control::new(tls_stream), user, password).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Failure {
        Failure::Reply(Reply {
            code,
            text: text.to_owned(),
        })
    }

    #[test]
    fn replies_map_to_stable_codes() {
        assert_eq!(
            classify(Step::Login, reply(530, "530 Login incorrect.")).code,
            ErrorCode::AuthFailed
        );
        assert_eq!(
            classify(
                Step::Login,
                reply(530, "530 Non-anonymous sessions must use encryption.")
            )
            .code,
            ErrorCode::Tls
        );
        assert_eq!(
            classify(Step::Login, reply(534, "534 Policy requires SSL.")).code,
            ErrorCode::Tls
        );
        assert_eq!(
            classify(Step::AuthTls, reply(500, "500 AUTH not understood")).code,
            ErrorCode::Tls
        );
        assert_eq!(
            classify(Step::Greeting, reply(421, "421 Too many connections")).code,
            ErrorCode::UnexpectedResponse
        );
        assert_eq!(
            classify(Step::Pwd, reply(550, "550 nope")).code,
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            classify(Step::Greeting, Failure::NotFtp).code,
            ErrorCode::UnexpectedResponse
        );
        assert_eq!(
            classify(
                Step::AuthTls,
                Failure::Tls("invalid peer certificate: UnknownIssuer".into())
            )
            .code,
            ErrorCode::Tls
        );
    }

    #[test]
    fn reply_text_is_one_bounded_line() {
        assert_eq!(
            reply_text(b"230-Welcome\r\n230 Login ok.\r\n"),
            "230-Welcome 230 Login ok."
        );
        assert!(reply_text(&[b'x'; 1000]).chars().count() <= 201);
    }

    /// Feeds `server` bytes to a control connection and reads replies.
    async fn replies(server: &'static [u8], n: usize) -> Vec<Result<(u16, String), String>> {
        let (client, mut far) = tokio::io::duplex(64 * 1024);
        far.write_all(server).await.unwrap_or_default();
        drop(far);
        let mut ctl = Control::new(client);
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(
                ctl.reply()
                    .await
                    .map(|r| (r.code, r.text))
                    .map_err(|e| format!("{e:?}")),
            );
        }
        out
    }

    #[tokio::test]
    async fn replies_single_and_multi_line_are_read_and_garbage_is_not_ftp() {
        let r = replies(b"220 hi\r\n230-one\r\n two\r\n230 done\r\n331\r\n", 4).await;
        assert_eq!(r[0], Ok((220, "220 hi".to_owned())));
        assert_eq!(r[1], Ok((230, "230-one two 230 done".to_owned())));
        assert_eq!(r[2], Ok((331, "331".to_owned())));
        assert_eq!(r[3], Err("Io(UnexpectedEof)".to_owned()));
        let r = replies(b"HTTP/1.1 400 Bad Request\r\n\r\n", 1).await;
        assert_eq!(r[0], Err("NotFtp".to_owned()));
        let r = replies(b"SSH-2.0-OpenSSH_9.2\r\n", 1).await;
        assert_eq!(r[0], Err("NotFtp".to_owned()));
        let r = replies(b"220 no end of line", 1).await;
        assert_eq!(r[0], Err("NotFtp".to_owned()));
        let r = replies(b"220-never ends\r\nmore\r\n", 1).await;
        assert_eq!(r[0], Err("NotFtp".to_owned()));
    }
}
