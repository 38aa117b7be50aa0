"""Which web pages and Host names may reach the API server: a page of another origin, or one
re-resolved to 127.0.0.1 under its own name (DNS rebinding), must not read answers and the
corpus they cite."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class OriginPolicy:
    """Which web pages, and which Host names, may reach the API.

    Requests without an Origin header (not from a browser page) pass the origin check. A page's
    request passes when its Origin is http(s) on a loopback name and the server's own port, or
    is in `allowed_origins`. A request that arrives on a loopback address passes the Host check
    when its Host names a loopback address or is in `allowed_hosts` (ports aside).
    """

    allowed_origins: frozenset[str] = frozenset()
    """Origins ('https://app.example:8443', lower case, no path) allowed besides the server's
    own; '*' allows any page."""
    allowed_hosts: frozenset[str] = frozenset()
    """Host names accepted on a loopback address besides the loopback names ('*': any)."""

    @classmethod
    def allowing(cls, origins: Iterable[str] = (), hosts: Iterable[str] = ()) -> OriginPolicy:
        """A policy from user-written lists (case and a trailing '/' or '.' do not matter)."""
        return cls(
            frozenset(o.strip().lower().rstrip("/") for o in origins if o.strip()),
            frozenset(h.strip().lower().rstrip(".") for h in hosts if h.strip()),
        )

    def refusal(self, scope: dict) -> str | None:
        """Why this HTTP request is refused, or None when it may go on."""
        headers = {name: value for name, value in scope.get("headers", [])}
        server = scope.get("server") or ("", 0)
        host = headers.get(b"host")
        if host is not None and is_loopback(server[0]):
            name = host_name(host.decode("latin-1"))
            if name not in LOOPBACK_NAMES and not self._host_allowed(name):
                return (
                    "the Host header does not name this server (a web page re-resolving its "
                    "name to 127.0.0.1?); allow the name with --allow-host"
                )
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), server[1]):
            return (
                "requests from web pages of other origins are refused; allow the page's "
                "origin with --allow-origin"
            )
        return None

    def _host_allowed(self, name: str | None) -> bool:
        return "*" in self.allowed_hosts or name in self.allowed_hosts

    def _origin_allowed(self, origin: str, port: int) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return False
        return (
            parts.scheme in ("http", "https")
            and parts.hostname in LOOPBACK_NAMES
            and origin_port == port
            and not (parts.path or parts.query or parts.username)
        )


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str | None:
    """The name of a Host header ('[::1]:8000' → '::1'), None when it is malformed."""
    try:
        parts = urlsplit(f"//{host.strip()}")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.hostname is None or parts.username is not None or parts.path or parts.query:
        return None
    return parts.hostname.rstrip(".")
