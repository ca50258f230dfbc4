"""The live dashboard: a static web page served on the WebSocket server's own port.

Routes (plain HTTP GET, registered with ``WebSocketServer.add_http``):

- ``/`` and ``/dashboard``: the page (``streamer/web/index.html``); ``/wall`` opens it on
  the supervisor wall, ``/alerts`` on the alert feed (whose data, ``/api/alerts``, the alert
  feed registers: ``streamer.supervise.alert_feed``);
- ``/static/palette.js``, ``/static/app.js``, ``/static/wall.js``, ``/static/alerts.js``,
  ``/static/style.css``: its scripts and style sheet;
- ``/api/streams``: the active streams and channels as JSON (guarded by
  ``websocket.token`` like ``/events``).

The page itself holds no data and is served without a token; it passes the
``?token=`` of its own URL on to ``/events`` and ``/api/streams``. Files are
read once when the routes are registered. Every response carries an ETag and
``Cache-Control: no-cache``, so browsers revalidate (a 304 costs one round
trip) and never run a stale script after an upgrade.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources

from websockets.http11 import Request, Response

from streamer.publish.http_edge import HttpHandler, json_response, response, token_guard
from streamer.publish.ws_server import WebSocketServer

log = logging.getLogger(__name__)

# /wall opens the supervisor wall (wall.js), /alerts the alert feed (alerts.js)
PAGE_PATHS = ("/", "/dashboard", "/wall", "/alerts")
ASSETS = {
    "/static/palette.js": ("palette.js", "text/javascript; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/wall.js": ("wall.js", "text/javascript; charset=utf-8"),
    "/static/alerts.js": ("alerts.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page loads only its own files and talks only to its own origin (ws: included).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def load(cls, name: str, content_type: str) -> StaticFile:
        body = (resources.files("streamer") / "web" / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return cls(body, content_type, etag)


def static_handler(file: StaticFile, extra_headers: tuple[tuple[str, str], ...] = ()
                   ) -> HttpHandler:
    """Serve ``file``; answer 304 when the browser already holds this version."""
    headers = (
        ("Content-Type", file.content_type),
        ("Cache-Control", "no-cache"),
        ("ETag", file.etag),
        ("X-Content-Type-Options", "nosniff"),
        *extra_headers,
    )

    def handle(request: Request) -> Response:
        if file.etag in request.headers.get("If-None-Match", ""):
            return response(HTTPStatus.NOT_MODIFIED, b"", headers)
        return response(HTTPStatus.OK, file.body, headers)

    return handle


def streams_handler(server: WebSocketServer) -> HttpHandler:
    """``/api/streams``: what ``hello`` lists, for scripts and health checks."""

    def handle(request: Request) -> Response:
        return json_response(HTTPStatus.OK, {"streams": server.bus.streams.as_list()})

    return handle


def add_dashboard(server: WebSocketServer) -> None:
    """Register the dashboard's routes on ``server`` (before or after it starts)."""
    page = StaticFile.load("index.html", "text/html; charset=utf-8")
    page_handler = static_handler(page, (
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("Referrer-Policy", "no-referrer"),  # the URL may carry ?token=
    ))
    for path in PAGE_PATHS:
        server.add_http(path, page_handler)
    for path, (name, content_type) in ASSETS.items():
        server.add_http(path, static_handler(StaticFile.load(name, content_type)))
    # Guarded like /events: the streams list is data, unlike the page.
    server.add_http("/api/streams", streams_handler(server), token_guard(server.config.token))
    port = server.config.port
    with contextlib.suppress(RuntimeError):  # not listening yet: the configured port
        port = server.port
    token_hint = "?token=<websocket.token>" if server.config.token else ""
    log.info("live dashboard: http://%s:%d/%s", server.config.host, port, token_hint)
