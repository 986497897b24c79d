"""credvault: a small client for pipeline workers (Python 3.9+, standard library only).

    from credvault import Client

    client = Client.from_env()              # CREDVAULT_SERVER, CREDVAULT_TOKEN or CREDVAULT_TOKEN_FILE
    r = client.resolve("conn_…", run_id="nightly-2026-12-07")
    password = r.fields["password"].reveal()
    ...
    client.report(r, "ok")                  # or "auth_failed" / "error": feeds the spike alerts

Every field value comes wrapped in :class:`Secret`, whose ``repr`` and ``str`` never show it;
``reveal()`` returns the value. Errors are :class:`CredvaultError` subclasses carrying the
server's problem ``code`` (the OpenAPI document's ``x-problem-codes``).
"""

from .client import (
    AuditUnavailable,
    Client,
    Conflict,
    CredvaultError,
    Forbidden,
    Invalid,
    NotFound,
    Resolved,
    Secret,
    Throttled,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AuditUnavailable",
    "Client",
    "Conflict",
    "CredvaultError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Resolved",
    "Secret",
    "Throttled",
    "Unauthenticated",
    "Unavailable",
]
