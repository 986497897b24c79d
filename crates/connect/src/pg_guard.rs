//! A guard under the PostgreSQL protocol: the password never leaves in clear text over a
//! connection that is not encrypted. libpq and tokio-postgres answer a server's
//! AuthenticationCleartextPassword with the password whatever the transport; over plain TCP
//! (`sslmode=disable`, or `prefer` after the server declined TLS) anyone on the path — or a
//! fake server — would read it. The guard watches the bytes below TLS: the client's first write
//! (an SSLRequest or not) and the server's answer (`S`: TLS follows, nothing more to watch;
//! `N`: plain text), then the server's messages until authentication ends, and fails the read
//! that carries a clear-text password request, so the driver never sees it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error a refused clear-text request surfaces as (inside an `io::Error`).
#[derive(Debug)]
pub(crate) struct CleartextRefused;

impl std::fmt::Display for CleartextRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server asked for the password in clear text over an unencrypted connection")
    }
}

impl std::error::Error for CleartextRefused {}

/// An SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[derive(Debug, Default)]
struct Parser {
    header: [u8; 5],
    have: usize,
    skip: usize,
    /// Reading an Authentication message's code: (bytes so far, their count, body length).
    auth: Option<([u8; 4], usize, usize)>,
}

enum Verdict {
    More,
    Cleartext,
    AuthenticationOk,
}

impl Parser {
    fn feed(&mut self, mut d: &[u8]) -> Verdict {
        while !d.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(d.len());
                self.skip -= n;
                d = &d[n..];
                continue;
            }
            if let Some((code, have, len)) = &mut self.auth {
                let n = (4 - *have).min(d.len());
                code[*have..*have + n].copy_from_slice(&d[..n]);
                *have += n;
                d = &d[n..];
                if *have == 4 {
                    let (c, rest) = (u32::from_be_bytes(*code), *len - 4);
                    self.auth = None;
                    match c {
                        3 => return Verdict::Cleartext,
                        0 => return Verdict::AuthenticationOk,
                        _ => self.skip = rest,
                    }
                }
                continue;
            }
            let n = (5 - self.have).min(d.len());
            self.header[self.have..self.have + n].copy_from_slice(&d[..n]);
            self.have += n;
            d = &d[n..];
            if self.have == 5 {
                self.have = 0;
                let [ty, a, b, c, e] = self.header;
                let len = (u32::from_be_bytes([a, b, c, e]) as usize).saturating_sub(4);
                if ty == b'R' && len >= 4 {
                    self.auth = Some(([0; 4], 0, len));
                } else {
                    self.skip = len;
                }
            }
        }
        Verdict::More
    }
}

#[derive(Debug)]
enum Watch {
    FirstWrite,
    SslAnswer,
    Plain(Parser),
    Off,
}

/// A stream that refuses to carry a clear-text password request over plain text.
pub(crate) struct NoCleartextPassword<S> {
    inner: S,
    watch: Watch,
}

impl<S> NoCleartextPassword<S> {
    pub(crate) fn new(inner: S) -> Self {
        NoCleartextPassword {
            inner,
            watch: Watch::FirstWrite,
        }
    }

    /// Looks at bytes the server sent; an error when they ask for a clear-text password.
    fn inspect(&mut self, mut new: &[u8]) -> std::io::Result<()> {
        if let Watch::SslAnswer = self.watch
            && let Some((&first, rest)) = new.split_first()
        {
            self.watch = if first == b'S' {
                Watch::Off
            } else {
                Watch::Plain(Parser::default())
            };
            new = rest;
        }
        if let Watch::Plain(p) = &mut self.watch {
            match p.feed(new) {
                Verdict::More => {}
                Verdict::AuthenticationOk => self.watch = Watch::Off,
                Verdict::Cleartext => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        CleartextRefused,
                    ));
                }
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoCleartextPassword<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Once TLS or authentication is under way, reads pass untouched.
        if matches!(r, Poll::Ready(Ok(())))
            && !matches!(this.watch, Watch::Off)
            && let Err(e) = this.inspect(&buf.filled()[before..])
        {
            buf.set_filled(before);
            return Poll::Ready(Err(e));
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoCleartextPassword<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Watch::FirstWrite = self.watch
            && !buf.is_empty()
        {
            self.watch = if buf.starts_with(&SSL_REQUEST) {
                Watch::SslAnswer
            } else {
                Watch::Plain(Parser::default())
            };
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u32, extra: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&u32::try_from(8 + extra.len()).unwrap_or(0).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(extra);
        m
    }

    #[test]
    fn a_clear_text_request_is_caught_across_any_split_and_others_pass() {
        let notice = [b'N', 0, 0, 0, 6, b'x', 0];
        for (code, extra, cleartext) in [
            (3u32, &[][..], true),
            (5, &[1, 2, 3, 4][..], false),
            (10, &b"SCRAM-SHA-256\0\0"[..], false),
        ] {
            let mut bytes = notice.to_vec();
            bytes.extend(r(code, extra));
            for split in 0..bytes.len() {
                let mut p = Parser::default();
                let a = p.feed(&bytes[..split]);
                let b = p.feed(&bytes[split..]);
                let caught = matches!(a, Verdict::Cleartext) || matches!(b, Verdict::Cleartext);
                assert_eq!(caught, cleartext, "code {code}, split at {split}");
            }
        }
        let mut p = Parser::default();
        assert!(matches!(p.feed(&r(0, &[])), Verdict::AuthenticationOk));
    }
}
