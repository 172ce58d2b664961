"""
Keeping secrets out of everything wslocust and Locust show: logs, the web UI,
CSV files and reports.

Three tools, from the most to the least precise:

- :func:`redact_uri` hides the credentials of a URL (``user:password@``) and the
  values of token-like query parameters (``?token=...``, ``&X-Amz-Signature=...``).
  Every error message that quotes a URL goes through it.
- :func:`conceal_uri` / :func:`reveal_uri`: a target URL with secrets is replaced,
  wherever Locust keeps it (``environment.host``, ``--host``, a user class's
  ``host``), by its redacted form, and the real URL stays in this process's
  registry. Locust shows only what it holds, so its web UI, ``--html`` report,
  download file names and our ``/ws/stats`` never see the secret, while
  :func:`wslocust.codec.uri.parse_uri` reveals the real URL when a user connects. The
  master ships its registry to its workers with each spawn message (see
  :mod:`wslocust.integration.secrets`).
- :func:`redact_text` replaces every known secret (a registered URL's
  credentials and tokens, the values of secret-looking headers such as
  ``Authorization`` and ``Cookie``) and every URL's credentials in free text: a
  log filter applies it to each log line as a last line of defence.

Pure Python, no I/O: the sans-I/O handshake uses it too.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
import urllib.parse
from collections.abc import Iterable, Mapping

__all__ = [
    "REDACTED",
    "RedactSecrets",
    "RedactedStderr",
    "add_concealed_targets",
    "conceal_uri",
    "concealed_targets",
    "is_secret_header",
    "looks_concealed",
    "redact_headers",
    "redact_text",
    "redact_uri",
    "register_secret",
    "register_uri_secrets",
    "reveal_uri",
]

REDACTED = "***"
"""What stands in for a secret."""

# Parameter names that carry credentials: token, access_token, api_key, apiKey,
# client_secret, password, auth, sig, X-Amz-Signature, X-Amz-Credential, session_id...
# Over-matching (e.g. "monkey") only hides a harmless value.
_SECRET_WORDS = r"token|secret|key|auth|pass|pwd|sig|session|credential|jwt|cookie"
# A value ends where the query does, and at quotes, brackets and backslashes, which a
# URL holds only percent-encoded but the text around a quoted URL does: 'ws://h/?token=x'.
_SECRET_QUERY = re.compile(rf"(?i)([?&;][^=&#;\s]*?(?:{_SECRET_WORDS})[^=&#;\s]*=)[^&#;\s'\"<>()\[\]\\]*")
# userinfo: everything between "//" and the authority's last "@" (a password may hold a raw "@");
# never brackets or quotes (RFC 3986 §3.2.1), so that "http://[user:password@]host" in a hint stays.
_USERINFO = re.compile(r"(//)[^/?#\s@\[\]'\"<>]*(?:@[^/?#\s@\[\]'\"<>]*)*@")
_SECRET_HEADER = re.compile(rf"(?i){_SECRET_WORDS}|^proxy-authorization$")
_CONCEALED = re.compile(r"//\*\*\*\d*@|=\*\*\*\d*(?:[&#;]|$)")
# Shorter secrets are not replaced in free text: "ab" would garble every "about".
_MIN_SECRET_LENGTH = 4


def redact_uri(url: str) -> str:
    """Hide credentials and token-like query values, so that a URL can be logged or shown."""
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", _USERINFO.sub(rf"\1{REDACTED}@", url))


def is_secret_header(name: str) -> bool:
    """True for headers whose values are credentials: Authorization, Cookie, X-Api-Key, X-Auth-Token..."""
    return bool(_SECRET_HEADER.search(name))


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with the value of each secret one replaced by :data:`REDACTED`."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, REDACTED if is_secret_header(name) else value) for name, value in pairs]


# Known secrets and concealed targets ----------------------------------------

_secrets: set[str] = set()
_longest_first: list[str] = []
"""The secrets, longest first (a secret inside a longer one must not break it up): sorted once per new secret,
not at every redaction, since a ``connect_headers`` hook may register a token at every reconnect."""
_targets: dict[str, str] = {}
"""Concealed form -> real URL."""


def register_secret(value: str) -> None:
    """Remember a secret so that :func:`redact_text` hides it wherever it appears."""
    new = []
    if len(value) >= _MIN_SECRET_LENGTH:
        new.append(value)
    # "Bearer abc...": the credential alone may be quoted too.
    scheme, _, credential = value.partition(" ")
    if credential and scheme.isalpha() and len(credential) >= _MIN_SECRET_LENGTH:
        new.append(credential)
    if not _secrets.issuperset(new):
        _secrets.update(new)
        _longest_first[:] = sorted(_secrets, key=len, reverse=True)


def register_uri_secrets(url: str) -> None:
    """Remember the credentials and token-like query values of ``url`` as secrets (see :func:`register_secret`)."""
    parsed = urllib.parse.urlsplit(url)
    # The password; a user name alone is a token (ws://TOKEN@host/). A user name beside a
    # password is hidden in URLs but not hunted in free text, where "user" or "admin" is common.
    part = parsed.password or parsed.username
    if part:
        register_secret(part)
        register_secret(urllib.parse.unquote(part))
        # Sent as "Authorization: Basic <token>" (wslocust.codec.uri), which a server may quote back.
        user, password = urllib.parse.unquote(parsed.username or ""), urllib.parse.unquote(parsed.password or "")
        register_secret(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))
    for match in _SECRET_QUERY.finditer(url):
        value = url[match.end(1) : match.end()]
        if value:
            register_secret(value)
            register_secret(urllib.parse.unquote(value))


def conceal_uri(url: str) -> str:
    """
    The form of ``url`` that is safe to show; the real URL is kept for :func:`reveal_uri`.

    A URL without secrets is returned as it is. Two different URLs that redact
    alike are told apart by a number after the first marker (``***2``), so
    each concealed form reveals exactly one URL.
    """
    if url in _targets or looks_concealed(url):
        return url
    shown = redact_uri(url)
    if shown == url:
        return url
    register_uri_secrets(url)
    candidate, number = shown, 1
    while _targets.get(candidate, url) != url:
        number += 1
        candidate = shown.replace(REDACTED, f"{REDACTED}{number}", 1)
    _targets[candidate] = url
    return candidate


def reveal_uri(url: str) -> str:
    """The real URL behind a form returned by :func:`conceal_uri`; any other URL unchanged."""
    return _targets.get(url, url)


def looks_concealed(url: str) -> bool:
    """True if ``url`` holds redaction markers where its credentials or tokens were."""
    return bool(_CONCEALED.search(url)) and redact_uri(url) == re.sub(r"\*\*\*\d+", REDACTED, url)


def concealed_targets() -> dict[str, str]:
    """Every concealed form and its real URL, to ship to workers."""
    return dict(_targets)


def add_concealed_targets(targets: Mapping[str, str]) -> None:
    """Learn concealed forms made by another process (the master)."""
    for shown, url in targets.items():
        _targets[shown] = url
        register_uri_secrets(url)


def redact_text(text: str) -> str:
    """Hide every known secret, and the credentials of any URL, in free text."""
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "@" in text:
        text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(rf"\1{REDACTED}", text)
    return text


class RedactSecrets(logging.Filter):
    """A log filter that passes every record through :func:`redact_text`, its traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


class RedactedStderr:
    """
    ``sys.stderr`` (looked up at each write), through :func:`redact_text`: for what
    is printed without logging, such as gevent's report of a greenlet that died,
    which quotes the greenlet's arguments.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(redact_text(text))

    def flush(self) -> None:
        sys.stderr.flush()
