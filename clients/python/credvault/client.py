"""The HTTP client: resolve and report, over the server's JSON API (see the package docs)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Dict, Optional


class Secret:
    """A value that does not show itself: ``repr``/``str``/formatting say ``Secret(***)``."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def reveal(self) -> Any:
        """The value itself (a string, number, or for nested fields a dict/list)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "Secret(***)"

    def __reduce__(self):  # never pickled into a file or a queue by accident
        raise TypeError("a credvault Secret cannot be pickled")


class CredvaultError(Exception):
    """A problem document from the server (or a transport failure, with ``status`` 0)."""

    def __init__(self, status: int, code: str, detail: str, field: Optional[str] = None,
                 request_id: Optional[str] = None, retry_after: Optional[int] = None) -> None:
        super().__init__(f"{status} {code}: {detail}" + (f" (request {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after


class Invalid(CredvaultError):
    """400 / 422: the request is wrong (``field`` names what)."""


class Unauthenticated(CredvaultError):
    """401: no valid token."""


class Forbidden(CredvaultError):
    """403: the token's principal lacks the permission."""


class NotFound(CredvaultError):
    """404: no such connection (or not visible to this token)."""


class Conflict(CredvaultError):
    """409: the connection or credential cannot be resolved now (disabled, expired, …)."""


class Throttled(CredvaultError):
    """429: too many failed authentications from this address; see ``retry_after``."""


class Unavailable(CredvaultError):
    """503: the server cannot answer now (store unavailable, OAuth refresh busy); retry later."""


class AuditUnavailable(Unavailable):
    """503 ``audit_unavailable``: a blocking audit sink is behind; secrets wait for it."""


_BY_STATUS = {400: Invalid, 401: Unauthenticated, 403: Forbidden, 404: NotFound, 408: Invalid,
              409: Conflict, 413: Invalid, 415: Invalid, 422: Invalid, 429: Throttled, 503: Unavailable}


@dataclass(frozen=True)
class Resolved:
    """A connection resolved for a run: its non-secret config and the credential's fields."""

    connection_id: str
    kind: str
    config: Dict[str, Any]
    credential_id: str
    credential_type: str
    variant: Optional[str]
    version: int
    run_id: str
    fields: Dict[str, Secret] = field(repr=False)
    #: Set when ``fields`` are made from the credential rather than its own: ``rds_iam_token``
    #: (username, a token as password, expires_at) or ``sts_session`` (a role's temporary keys).
    delivered: Optional[str] = None

    def __repr__(self) -> str:
        return (f"Resolved(connection_id={self.connection_id!r}, kind={self.kind!r}, credential_id={self.credential_id!r}, "
                f"version={self.version}, run_id={self.run_id!r}, fields=[{', '.join(sorted(self.fields))}])")


class Client:
    """A worker's client. ``server`` is the base URL; ``token`` a worker service account's."""

    def __init__(self, server: str, token: str, timeout: float = 15.0, ca_file: Optional[str] = None) -> None:
        if not server.startswith(("http://", "https://")):
            raise ValueError("server must be an http:// or https:// URL")
        if not token:
            raise ValueError("a token is required")
        self._server = server.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file) if server.startswith("https://") else None

    def __repr__(self) -> str:
        return f"Client(server={self._server!r}, token=***)"

    @classmethod
    def from_env(cls, timeout: float = 15.0, server: Optional[str] = None,
                 token_file: Optional[str] = None) -> "Client":
        """From ``CREDVAULT_SERVER`` and ``CREDVAULT_TOKEN`` (or ``CREDVAULT_TOKEN_FILE``), as the CLI reads them;
        ``server`` and ``token_file`` override the variables."""
        server = (server or os.environ.get("CREDVAULT_SERVER", "")).strip()
        if not server:
            raise ValueError("CREDVAULT_SERVER is not set")
        # A token file given by the caller wins; otherwise CREDVAULT_TOKEN, then CREDVAULT_TOKEN_FILE.
        token = "" if token_file else os.environ.get("CREDVAULT_TOKEN", "").strip()
        token_file = token_file or os.environ.get("CREDVAULT_TOKEN_FILE")
        if not token and token_file:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        if not token:
            raise ValueError("CREDVAULT_TOKEN or CREDVAULT_TOKEN_FILE is needed")
        return cls(server, token, timeout=timeout, ca_file=os.environ.get("CREDVAULT_CA_FILE") or None)

    def _post(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(self._server + path, data=data, method="POST", headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json",
            "Accept": "application/json", "User-Agent": "credvault-python/0.1"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise _problem(e) from None
        except (urllib.error.URLError, OSError) as e:
            raise CredvaultError(0, "unreachable", f"cannot reach {self._server}: {e}") from None
        return json.loads(raw) if raw else {}

    def resolve(self, connection_id: str, run_id: str, pipeline_id: Optional[str] = None,
                version: Optional[int] = None) -> Resolved:
        """Resolves ``connection_id`` for ``run_id`` (journaled with it before the answer leaves)."""
        return self._resolve({"connection_id": connection_id}, run_id, pipeline_id, version)

    def resolve_name(self, workspace_id: str, name: str, run_id: str, pipeline_id: Optional[str] = None,
                     version: Optional[int] = None) -> Resolved:
        """Resolves the connection called ``name`` in ``workspace_id`` (for tools that know connections by name)."""
        return self._resolve({"workspace_id": workspace_id, "connection_name": name}, run_id, pipeline_id, version)

    def _resolve(self, target: Dict[str, Any], run_id: str, pipeline_id: Optional[str],
                 version: Optional[int]) -> Resolved:
        body: Dict[str, Any] = dict(target, run_id=run_id)
        if pipeline_id is not None:
            body["pipeline_id"] = pipeline_id
        if version is not None:
            body["version"] = version
        r = self._post("/v1/resolve", body)
        conn, cred = r.get("connection", {}), r.get("credential", {})
        fields = {k: Secret(v) for k, v in (cred.get("fields") or {}).items()}
        r.clear()
        return Resolved(connection_id=conn.get("id", ""), kind=conn.get("kind", ""), config=conn.get("config") or {},
                        credential_id=cred.get("id", ""), credential_type=cred.get("type", ""), variant=cred.get("variant"),
                        version=int(cred.get("version", 0)), run_id=run_id, fields=fields,
                        delivered=cred.get("delivered"))

    def report(self, resolved: Resolved, outcome: str) -> None:
        """Says how using the secret went: ``ok``, ``auth_failed`` (the target refused it) or ``error``."""
        if outcome not in ("ok", "auth_failed", "error"):
            raise ValueError("outcome is ok, auth_failed or error")
        self._post("/v1/resolve/report", {"connection_id": resolved.connection_id, "run_id": resolved.run_id,
                                          "version": resolved.version, "outcome": outcome})


def _problem(e: urllib.error.HTTPError) -> CredvaultError:
    try:
        body = json.loads(e.read() or b"{}")
    except ValueError:
        body = {}
    code = body.get("code") or "http_error"
    cls = AuditUnavailable if code == "audit_unavailable" else _BY_STATUS.get(e.code, CredvaultError)
    retry = e.headers.get("Retry-After") if e.headers else None
    return cls(e.code, code, body.get("detail") or e.reason or "", field=body.get("field"),
               request_id=body.get("request_id"), retry_after=int(retry) if retry and retry.isdigit() else None)
