"""The HTTP edge on loopback, with real websockets clients and plain HTTP requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from http import HTTPStatus

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from streamer.core.errors import PublisherError
from streamer.publish.http_edge import (
    TOKEN_HINT,
    HttpEdge,
    Listen,
    Refusal,
    json_response,
    secret_matches,
    token_guard,
    token_ok,
)


def listen(port: int = 0, max_message_bytes: int = 1024) -> Listen:
    return Listen("127.0.0.1", port, max_message_bytes, purpose="test edge",
                  port_hint="choose another port with --set test.port=N")


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def hello(request: Request) -> Response:
    return json_response(HTTPStatus.OK, {"hello": "world"})


@pytest.fixture
async def edge() -> AsyncIterator[HttpEdge]:
    async with HttpEdge(listen()) as started:
        yield started


async def http_get(port: int, path: str, headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP/1.1 request; the edge closes the connection after answering."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), parsed, body


async def refused(url: str, headers: dict[str, str] | None = None) -> Response:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers):
            pass
    return info.value.response


async def test_websocket_route_with_or_without_trailing_slash_and_query(edge: HttpEdge) -> None:
    edge.add_websocket("/echo/", echo)  # registered with a slash: the same route
    for path in ("/echo", "/echo/", "/echo?x=1"):
        async with connect(f"ws://127.0.0.1:{edge.port}{path}") as ws:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 5) == "ping"


async def test_unknown_path_is_a_json_404_listing_the_websocket_endpoints(
        edge: HttpEdge) -> None:
    edge.add_websocket("/b", echo)
    edge.add_websocket("/a", echo)
    answer = await refused(f"ws://127.0.0.1:{edge.port}/nowhere")
    assert answer.status_code == 404
    assert json.loads(answer.body) == {
        "error": "no WebSocket endpoint at /nowhere; WebSocket endpoints: /a, /b"}
    status, headers, body = await http_get(edge.port, "/nowhere")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"].startswith("no page at /nowhere")


async def test_http_route_answers_plain_requests_on_its_exact_path(edge: HttpEdge) -> None:
    edge.add_http("/hello", hello)
    status, headers, body = await http_get(edge.port, "/hello?x=1")
    assert status == 200 and json.loads(body) == {"hello": "world"}
    assert int(headers["Content-Length"]) == len(body) and body.endswith(b"\n")
    status, _, _ = await http_get(edge.port, "/hello/")
    assert status == 404  # pages are exact: relative asset URLs depend on it
    # An upgrade request only ever reaches a WebSocket route.
    assert (await refused(f"ws://127.0.0.1:{edge.port}/hello")).status_code == 404


async def test_token_guard_on_websocket_and_http_routes(edge: HttpEdge) -> None:
    edge.add_websocket("/events", echo, token_guard("s3cret"))
    edge.add_http("/api", hello, token_guard("s3cret"))
    base = f"ws://127.0.0.1:{edge.port}/events"
    for headers in (None, {"Authorization": "Bearer wrong"}):
        answer = await refused(base, headers)
        assert answer.status_code == 401 and json.loads(answer.body) == {"error": TOKEN_HINT}
    assert (await refused(f"{base}?token=wrong")).status_code == 401
    for url, headers in ((base, {"Authorization": "Bearer s3cret"}),
                         (f"{base}?token=s3cret", None)):
        async with connect(url, additional_headers=headers) as ws:
            await ws.send("in")
            assert await asyncio.wait_for(ws.recv(), 5) == "in"
    assert (await http_get(edge.port, "/api"))[0] == 401
    assert (await http_get(edge.port, "/api", {"Authorization": "Bearer s3cret"}))[0] == 200
    assert (await http_get(edge.port, "/api?token=s3cret"))[0] == 200


async def test_a_guard_refusal_carries_its_status_and_headers(edge: HttpEdge) -> None:
    seen: list[str] = []

    def busy(request: Request) -> Refusal | None:
        seen.append(request.path)
        return Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "full", (("Retry-After", "5"),))

    edge.add_websocket("/calls", echo, busy)
    answer = await refused(f"ws://127.0.0.1:{edge.port}/calls?id=1")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert json.loads(answer.body) == {"error": "full"}
    assert seen == ["/calls?id=1"]


async def test_plain_request_on_a_websocket_path_is_guarded_then_told_to_upgrade(
        edge: HttpEdge) -> None:
    edge.add_websocket("/events", echo, token_guard("s3cret"))
    assert (await http_get(edge.port, "/events"))[0] == 401
    status, _, _ = await http_get(edge.port, "/events?token=s3cret")
    assert status == 426  # websockets' own answer: this path needs a WebSocket client


async def test_routes_added_after_start_are_served(edge: HttpEdge) -> None:
    assert (await http_get(edge.port, "/late"))[0] == 404
    edge.add_http("/late", hello)
    assert (await http_get(edge.port, "/late"))[0] == 200


async def test_oversized_message_closes_with_1009() -> None:
    async with HttpEdge(listen(max_message_bytes=100)) as edge:
        edge.add_websocket("/echo", echo)
        async with connect(f"ws://127.0.0.1:{edge.port}/echo") as ws:
            await ws.send("x" * 101)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1009


async def test_stop_closes_connections_and_waits_for_their_handlers() -> None:
    finished: list[int] = []

    async def hold(ws: ServerConnection) -> None:
        try:
            await ws.wait_closed()
        finally:
            finished.append(ws.close_code or 0)

    edge = HttpEdge(listen())
    edge.add_websocket("/hold", hold)
    await edge.start()
    async with connect(f"ws://127.0.0.1:{edge.port}/hold") as ws:
        await edge.stop()
        assert finished == [1001]  # going away, and the handler has returned
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1001


async def test_port_before_start_and_a_taken_port() -> None:
    edge = HttpEdge(listen())
    with pytest.raises(RuntimeError, match="test edge server not started"):
        _ = edge.port
    async with HttpEdge(listen()) as first:
        port = first.port
        with pytest.raises(PublisherError) as info:
            await HttpEdge(listen(port=port)).start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = first.port
    message = str(info.value)
    assert f"cannot listen on 127.0.0.1:{port} for test edge" in message
    assert message.endswith("; choose another port with --set test.port=N")


def test_secret_comparison() -> None:
    assert secret_matches("abc", "abc")
    assert not secret_matches("abd", "abc") and not secret_matches("abcd", "abc")
    assert not secret_matches(None, "abc")
    request = Request("/events?token=abc", Headers())
    assert token_ok(None, request) and token_ok("abc", request)
    assert not token_ok("xyz", request)
    bearer = Request("/events?token=xyz", Headers([("Authorization", "Bearer abc")]))
    assert token_ok("abc", bearer)  # the header wins over the query string
