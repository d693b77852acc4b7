"""Serving the application: one listening socket and uvicorn on it."""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

from newsletter.errors import InputError


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket, or fail with one line naming the setting to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it a keep-alive client waits
    # ~40 ms per response for Nagle's algorithm and delayed ACKs to settle.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(
            f"web.port: cannot listen on {host}:{port} ({exc.strerror}); "
            f"set [web] port or NEWSLETTER_WEB__PORT"
        ) from None
    sock.listen(2048)
    return sock


def make_server(app: Starlette) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            http="httptools",
            lifespan="on",
            # The application decides whom to believe ([web] trusted_proxies); uvicorn's
            # default would take X-Forwarded-For from any loopback connection.
            proxy_headers=False,
        )
    )
