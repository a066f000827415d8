"""Credentials in service URIs: kept out of params files, logs, MLflow params and Prefect artifacts.

A tracking URI may carry ``user:password@`` (``http://alice:token@mlflow.example``). The password
must never be written anywhere the pipeline records things, so:

- :func:`refuse_password` rejects it in committed settings (``params.yaml: tracking.uri``);
- :func:`split_credentials` takes it out of the URI before MLflow sees it (MLflow would print the
  URI in its "View run" line); the caller passes it on as ``MLFLOW_TRACKING_USERNAME`` /
  ``MLFLOW_TRACKING_PASSWORD``, MLflow's own variables for HTTP basic auth;
- :func:`redact` masks any ``scheme://user:password@`` left in a message.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

from cliper.errors import CliperError

MASK = "***"
_USERINFO_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):(?P<secret>[^@\s/]+)@")


class CredentialInSettings(CliperError):
    """A password written into a settings file that is committed and logged."""


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``."""
    return _USERINFO_RE.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without user info, user, password)``; user and password are ``None`` when absent."""
    parts = urlsplit(uri)
    if "://" not in uri or parts.password is None and parts.username is None:
        return uri, None, None
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password


def refuse_password(uri: str | None, where: str, env_hint: str) -> None:
    """Raise :class:`CredentialInSettings` when ``uri`` holds a password (``where`` names the setting)."""
    if uri and split_credentials(uri)[2] is not None:
        raise CredentialInSettings(
            f"{where} holds a password ({redact(uri)}); that file is committed and logged. Remove it "
            f"and pass the credentials in the environment instead: {env_hint}")
