"""An Apache Airflow secrets backend: tasks get their connections from credvault.

In ``airflow.cfg`` (or the matching ``AIRFLOW__SECRETS__BACKEND`` / ``…__BACKEND_KWARGS``
environment variables; Airflow 3 workers also read ``[workers] secrets_backend``)::

    [secrets]
    backend = credvault.airflow.CredvaultBackend
    backend_kwargs = {"workspace_id": "ws_…"}

The server and the worker token come from ``CREDVAULT_SERVER`` and ``CREDVAULT_TOKEN`` (or
``CREDVAULT_TOKEN_FILE``) as for :meth:`credvault.Client.from_env`, or from the ``server`` and
``token_file`` keyword arguments (a token itself never belongs in ``airflow.cfg``).

``BaseHook.get_connection("warehouse")`` then resolves the credvault connection named
``warehouse`` in that workspace (a ``conn_…`` ID works too), journaled with the task's run —
``airflow:<dag_id>:<run_id>:<task_id>`` — and maps it to an Airflow ``Connection``
(:func:`to_airflow`). A connection credvault does not know is ``None`` (Airflow goes on to its
other backends); one credvault refuses — a disabled, expired or revoked credential, a token
without access — stops there: Airflow does not fall back to another backend's copy.
Variables and configuration are not served (``None``).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Dict, Optional

from .client import Client, CredvaultError, NotFound, Resolved

try:  # Airflow 3 (Task SDK); the same base class name in Airflow 2.
    from airflow.sdk.bases.secrets_backend import BaseSecretsBackend
except ImportError:  # pragma: no cover - depends on the installed Airflow
    try:
        from airflow.secrets import BaseSecretsBackend  # type: ignore[no-redef]
    except ImportError:  # no Airflow at all: the mapping below still imports
        BaseSecretsBackend = object  # type: ignore[misc,assignment]

try:  # the refusal Airflow 3 treats as final (it does not try its other backends after it)
    from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied as _Denied
except ImportError:  # pragma: no cover - older Airflow has no authoritative refusal
    _Denied = PermissionError  # type: ignore[misc,assignment]

# credvault connector kind -> Airflow conn_type
_CONN_TYPES = {
    "postgres": "postgres",
    "redshift": "redshift",
    "mysql": "mysql",
    "sqlserver": "mssql",
    "oracle": "oracle",
    "snowflake": "snowflake",
    "bigquery": "google_cloud_platform",
    "gcs": "google_cloud_platform",
    "s3": "aws",
    "azure_blob": "wasb",
    "http": "http",
    "ftp": "ftp",
    "ldap": "ldap",
    "oauth_saas": "http",
}


def to_airflow(r: Resolved) -> Dict[str, Any]:
    """The keyword arguments of an Airflow ``Connection`` for a resolved connection.

    Databases: ``host``, ``port``, ``schema`` (the database), ``login``, ``password``; AWS keys:
    ``login``/``password`` with ``region_name`` and ``aws_session_token`` in ``extra``; a GCP
    service account: ``extra.keyfile_dict``; an OAuth credential: ``password`` is the access
    token; HTTP: ``host`` is the base URL. The connection's other settings go to ``extra``.
    """
    cfg = dict(r.config)
    f = {k: v.reveal() for k, v in r.fields.items()}
    out: Dict[str, Any] = {"conn_type": _CONN_TYPES.get(r.kind, r.kind)}
    extra: Dict[str, Any] = {}
    if "host" in cfg:
        out["host"] = cfg.pop("host")
    if "port" in cfg:
        out["port"] = cfg.pop("port")
    if "database" in cfg:
        out["schema"] = cfg.pop("database")
    if "base_url" in cfg:
        out["host"] = cfg.pop("base_url")
    if "username" in f:
        out["login"] = f["username"]
    if "password" in f:
        out["password"] = f["password"]
    if r.credential_type == "aws" and r.delivered != "rds_iam_token":  # AWS keys (a key, or a role's session)
        out["login"] = f.get("access_key_id")
        out["password"] = f.get("secret_access_key")
        if f.get("session_token"):
            extra["aws_session_token"] = f["session_token"]
        if cfg.get("region") or f.get("region"):
            extra["region_name"] = cfg.pop("region", None) or f.get("region")
    elif r.credential_type == "gcp" and f.get("service_account_json"):
        key = f["service_account_json"]
        extra["keyfile_dict"] = key if isinstance(key, str) else json.dumps(key)
        if cfg.get("project_id"):
            extra["project"] = cfg.pop("project_id")
    elif r.credential_type == "oauth" and f.get("access_token"):
        out["password"] = f["access_token"]
    elif r.credential_type == "azure":
        out["login"] = f.get("client_id")
        out["password"] = f.get("client_secret")
        if f.get("tenant_id"):
            extra["tenant_id"] = f["tenant_id"]
    extra.update({k: v for k, v in cfg.items() if v is not None})
    if extra:
        out["extra"] = json.dumps(extra, sort_keys=True)
    return {k: v for k, v in out.items() if v is not None}


def run_id_from_env() -> str:
    """The run a resolve is journaled with: the task's DAG run when Airflow runs it."""
    dag, run, task = (os.environ.get(f"AIRFLOW_CTX_{k}") for k in ("DAG_ID", "DAG_RUN_ID", "TASK_ID"))
    if dag and run:
        return f"airflow:{dag}:{run}" + (f":{task}" if task else "")
    return f"airflow:{socket.gethostname()}:{os.getpid()}"


class CredvaultBackend(BaseSecretsBackend):  # type: ignore[misc,valid-type]
    """Airflow connections from credvault (see the module documentation)."""

    def __init__(self, workspace_id: Optional[str] = None, server: Optional[str] = None,
                 token_file: Optional[str] = None, timeout: float = 15.0, **kwargs: Any) -> None:
        if kwargs.get("token"):
            raise ValueError("give the worker token by CREDVAULT_TOKEN or token_file, not in airflow.cfg")
        super().__init__()
        self.workspace_id = workspace_id
        self._server, self._token_file, self._timeout = server, token_file, timeout
        self._client: Optional[Client] = None

    def __repr__(self) -> str:
        return f"CredvaultBackend(workspace_id={self.workspace_id!r})"

    def client(self) -> Client:
        """The client, made on first use (so a misconfiguration shows when a task asks)."""
        if self._client is None:
            self._client = Client.from_env(timeout=self._timeout, server=self._server, token_file=self._token_file)
        return self._client

    def resolve(self, conn_id: str) -> Optional[Resolved]:
        """Resolves ``conn_id`` (a ``conn_…`` ID, or a name in the workspace); ``None`` if unknown."""
        run_id = run_id_from_env()
        try:
            if conn_id.startswith("conn_"):
                return self.client().resolve(conn_id, run_id=run_id)
            if not self.workspace_id:
                return None  # names need a workspace: not ours to answer
            return self.client().resolve_name(self.workspace_id, conn_id, run_id=run_id)
        except NotFound:
            return None
        except CredvaultError as e:
            if e.status in (401, 403, 409, 422):
                # Refused, not unknown: Airflow must not fall back to another backend's copy.
                raise _Denied(f"credvault refused connection {conn_id!r}: {e.code}") from None
            raise

    def get_connection(self, conn_id: str, team_name: Optional[str] = None) -> Any:
        r = self.resolve(conn_id)
        if r is None:
            return None
        getter = getattr(self, "_get_connection_class", None)
        if getter is not None:
            conn_class = getter()
        else:  # pragma: no cover - Airflow 2
            from airflow.models.connection import Connection as conn_class
        return conn_class(conn_id=conn_id, **to_airflow(r))

    def get_conn_value(self, conn_id: str, team_name: Optional[str] = None) -> Optional[str]:
        r = self.resolve(conn_id)
        return None if r is None else json.dumps(to_airflow(r))

    def get_variable(self, key: str, team_name: Optional[str] = None) -> Optional[str]:
        return None

    def get_config(self, key: str) -> Optional[str]:
        return None
