"""The dashboard's HTTP routes on the real server, fetched with a plain HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request

from harness import conversation as conv
from streamer.core.config import AppConfig, load_config
from streamer.publish.bus import EventBus
from streamer.runtime import open_publishers


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def fetch(url: str, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(get, url, headers)


async def test_page_and_assets_with_types_and_cache_headers(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    for path in ("/", "/dashboard"):
        status, headers, body = await fetch(server.url(path))
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'src="static/app.js"' in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["Cache-Control"] == "no-cache" and headers["ETag"]
    for path, content_type in (("/static/app.js", "text/javascript; charset=utf-8"),
                               ("/static/style.css", "text/css; charset=utf-8")):
        status, headers, body = await fetch(server.url(path))
        assert status == 200 and headers["Content-Type"] == content_type
        assert int(headers["Content-Length"]) == len(body) > 1000
        assert headers["X-Content-Type-Options"] == "nosniff"
        status, _, body = await fetch(server.url(path), {"If-None-Match": headers["ETag"]})
        assert status == 304 and body == b""
    status, _, _ = await fetch(server.url("/static/missing.js"))
    assert status == 404


async def test_nothing_is_fetched_from_elsewhere(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    for path in ("/", "/static/app.js", "/static/style.css"):
        _, _, body = await fetch(server.url(path))
        assert b"https://" not in body and b"//cdn" not in body and b"@import" not in body


async def test_api_streams_lists_active_streams_and_honours_the_token(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(token="s3cret")
    server.publish(conv.started("call-1", "agent"), conv.started("call-1", "customer"))
    status, _, body = await fetch(server.url("/api/streams"))
    assert status == 401 and "token" in json.loads(body)["error"]
    status, _, _ = await fetch(server.url("/api/streams", token="wrong"))
    assert status == 401
    status, _, body = await fetch(server.url("/api/streams", token="s3cret"))
    assert status == 200
    assert json.loads(body) == {"streams": [{"stream_id": "call-1",
                                             "channels": ["agent", "customer"]}]}
    status, _, body = await fetch(server.url("/api/streams"),
                                  {"Authorization": "Bearer s3cret"})
    assert status == 200
    status, _, _ = await fetch(server.url("/"))  # the page holds no data: no token needed
    assert status == 200


async def test_pipeline_publishers_serve_the_page_unless_switched_off() -> None:
    assert AppConfig().websocket.dashboard is True
    for flag, expected in (("true", 200), ("false", 404)):
        config = load_config(None, ["websocket.port=0", "stdout.enabled=false",
                                    f"websocket.dashboard={flag}"])
        async with contextlib.AsyncExitStack() as stack:
            publishers = await open_publishers(config, EventBus(), stack)
            assert publishers.server is not None
            status, _, _ = await fetch(f"http://127.0.0.1:{publishers.server.port}/")
            assert status == expected
