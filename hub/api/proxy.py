"""``X-Forwarded-*`` from trusted reverse proxies (docs/security.md#behind-a-reverse-proxy).

With ``TRUSTED_PROXY_HOPS`` = N > 0 the app is wrapped in werkzeug's ``ProxyFix`` trusting
the last N values of ``X-Forwarded-For``, ``-Proto``, ``-Host``, ``-Port`` and ``-Prefix``:
the client's address (rate limits, audit) and the public scheme, host and path prefix, from
which every URL the hub writes is made (Bundle links and ``fullUrl``, ``Location``,
``Content-Location``, the CapabilityStatement's ``implementation.url``). A forwarded value
that is not what its header may hold (a scheme other than http/https, a host with a path or
spaces, a prefix with ``..``, an address that is no IP address) is ignored, and the request
keeps what the connection said. With 0 (the default) forwarded headers are ignored: anyone
can send them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from hub.config import setting

_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$"
)
_PORT = re.compile(r"^[0-9]{1,5}$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*$")


def _valid_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_CHECKS = {
    "wsgi.url_scheme": lambda v: v in ("http", "https"),
    "HTTP_HOST": lambda v: bool(_HOST.match(v)) and len(v) <= 255,
    "SERVER_PORT": lambda v: bool(_PORT.match(v)),
    "SCRIPT_NAME": lambda v: bool(_PREFIX.match(v)) and "/.." not in v and len(v) <= 255,
    "REMOTE_ADDR": _valid_address,
}


class _Checked:
    """Inside ``ProxyFix``: puts back every forwarded value that is not well-formed."""

    def __init__(self, app: Any):
        self.app = app

    def __call__(self, environ: dict, start_response):
        original = environ.get("werkzeug.proxy_fix.orig") or {}
        for key, ok in _CHECKS.items():
            value = environ.get(key)
            if value != original.get(key) and not (isinstance(value, str) and ok(value)):
                environ[key] = original.get(key)
                if key == "HTTP_HOST":
                    environ["SERVER_NAME"] = original.get("SERVER_NAME")
                    environ["SERVER_PORT"] = original.get("SERVER_PORT")
        if environ.get("SCRIPT_NAME") is None:
            environ["SCRIPT_NAME"] = ""
        return self.app(environ, start_response)


def init_app(app: Flask) -> None:
    hops = int(setting(app.config, "TRUSTED_PROXY_HOPS"))
    if hops > 0:
        app.wsgi_app = ProxyFix(
            _Checked(app.wsgi_app),
            x_for=hops,
            x_proto=hops,
            x_host=hops,
            x_port=hops,
            x_prefix=hops,
        )
