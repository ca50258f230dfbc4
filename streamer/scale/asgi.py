"""An ASGI WebSocket (Starlette's, as Ray Serve hands it to a FastAPI route) with the shape
of a ``websockets`` server connection, so ``streamer.ingest.server`` runs unchanged on it.

``IngestServer``'s handlers use ``recv``, ``send``, ``close``, ``request`` (path with query,
headers) and ``remote_address``, and expect ``websockets.exceptions.ConnectionClosed`` when
the client has gone: ``AsgiConnection`` gives exactly that. Close reasons longer than the
123 bytes a close frame allows are cut (at a character boundary).
"""

from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket, WebSocketState
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close
from websockets.http11 import Request

MAX_REASON_BYTES = 123


def close_reason(text: str) -> str:
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def handshake_request(websocket: WebSocket) -> Request:
    """The handshake as ``websockets`` shows it: path with query string, the headers."""
    query = websocket.scope.get("query_string", b"").decode("latin-1")
    path = websocket.scope.get("path", "/") + (f"?{query}" if query else "")
    return Request(path, Headers([(k, v) for k, v in websocket.headers.items()]))


class AsgiConnection:
    """One accepted ASGI WebSocket, seen as a ``websockets.ServerConnection``."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self.request: Request | None = handshake_request(websocket)
        client = websocket.client
        self.remote_address: tuple[str, int] = (client.host, client.port) if client else ("", 0)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._closed: Close | None = None  # what the client sent (disconnect) or we sent

    def _gone(self) -> ConnectionClosedOK | ConnectionClosedError:
        close = self._closed or Close(1006, "")
        kind = ConnectionClosedOK if close.code in (1000, 1001) else ConnectionClosedError
        return kind(close, None)

    async def recv(self) -> str | bytes:
        if self._closed is not None:
            raise self._gone()
        message: Any = await self._ws.receive()  # an ASGI message (a mapping)
        if message["type"] == "websocket.disconnect":
            self._closed = Close(int(message.get("code", 1005)), str(message.get("reason") or ""))
            self.close_code, self.close_reason = self._closed.code, self._closed.reason
            raise self._gone()
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"")

    async def send(self, message: str | bytes) -> None:
        if self._closed is not None or self._ws.application_state != WebSocketState.CONNECTED:
            raise self._gone()
        if isinstance(message, str):
            await self._ws.send_text(message)
        else:
            await self._ws.send_bytes(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close once; later calls (and calls after the client left) do nothing."""
        if self._closed is not None or self._ws.application_state != WebSocketState.CONNECTED:
            return
        reason = close_reason(reason)
        self._closed = Close(code, reason)
        self.close_code, self.close_reason = code, reason
        await self._ws.close(code, reason)


__all__ = ["AsgiConnection", "close_reason", "handshake_request"]
