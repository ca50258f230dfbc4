"""TLS end to end (issue 13, row 10), with a throwaway CA made in the test (openssl CLI):
``wss://`` ingest and subscribers from ``tls_cert``/``tls_key``, MQTT over TLS with a
client certificate to a Mosquitto TLS listener that requires one.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from harness.broker import Broker
from harness.net import free_port, wait_for_port
from streamer.core.config import MqttConfig, WebSocketConfig
from streamer.core.errors import PublisherError
from streamer.publish.bus import EventBus
from streamer.publish.mqtt_publisher import MqttPublisher
from streamer.publish.ws_server import WebSocketServer
from tests.ingest.test_server import RecordingRecognizer, make_config, started
from tests.streamer.test_bus_and_events import sample_emotion
from tests.streamer.test_mqtt_publisher import Collector, running

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(cwd: Path, name: str, subject: str, ext: str) -> None:
    """A P-256 key and a certificate for it signed by the CA in ``cwd``."""
    (cwd / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=emotion-stream test CA", cwd=d)
    issue(d, "server", "/CN=localhost",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
          "extendedKeyUsage=serverAuth\n")
    issue(d, "client", "/CN=emotion-stream", "basicConstraints=CA:FALSE\n"
          "extendedKeyUsage=clientAuth\n")
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key")


async def test_wss_subscribers(pki: Pki) -> None:
    bus = EventBus()
    config = WebSocketConfig(port=0, tls_cert=str(pki.server_cert),
                             tls_key=str(pki.server_key))
    async with WebSocketServer(config, bus) as server:
        url = f"wss://127.0.0.1:{server.port}/events"
        async with connect(url, ssl=pki.client_context(), open_timeout=TIMEOUT_S) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            bus.publish(sample_emotion("s1", "mono", 0))
            got = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that trusts another CA
            async with connect(url, ssl=ssl.create_default_context(), open_timeout=TIMEOUT_S):
                pass
    assert got["utterance_id"] == "s1/mono/0"


async def test_wss_ingest(pki: Pki) -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(tls_cert=str(pki.server_cert),
                                             tls_key=str(pki.server_key)), rec)
    try:
        url = f"wss://127.0.0.1:{server.port}/ingest/pcm?token=pcm-secret"
        async with connect(url, ssl=pki.client_context(), open_timeout=TIMEOUT_S) as ws:
            await ws.send(json.dumps({"type": "start", "stream_id": "tls-call"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
            await ws.send(b"\x00\x00" * 1600)
            await ws.send(json.dumps({"type": "stop"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))["type"] == "stopped"
    finally:
        await server.__aexit__()
    assert base.startswith("ws://")  # the helper's URL; the server itself speaks wss only
    assert reply["type"] == "started" and ("pcm:tls-call", "customer") in rec.channels


async def test_bad_certificate_is_a_clear_error(tmp_path: Path, pki: Pki) -> None:
    config = WebSocketConfig(port=0, tls_cert=str(tmp_path / "missing.pem"),
                             tls_key=str(pki.server_key))
    with pytest.raises(PublisherError, match="cannot use the TLS certificate"):
        async with WebSocketServer(config, EventBus()):
            pass


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki):  # type: ignore[no-untyped-def]
    """Mosquitto with a plain loopback listener (the test's collector) and a TLS listener
    that requires a client certificate from the test CA (the publisher)."""
    broker = Broker(tmp_path)
    tls_port = free_port()
    broker.conf.write_text(
        broker.conf.read_text()
        + f"listener {tls_port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.server_cert}\n"
          f"keyfile {pki.server_key}\nrequire_certificate true\ntls_version tlsv1.2\n"
          # as root Mosquitto would read the files as user 'mosquitto'; no effect otherwise
          "user root\n")
    broker.start()
    wait_for_port(tls_port)
    yield broker, tls_port
    broker.stop()


async def test_mqtt_over_tls_with_a_client_certificate(tls_broker, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    broker, tls_port = tls_broker
    bus = EventBus()
    publisher = MqttPublisher(MqttConfig(
        enabled=True, port=tls_port, prefix="emo", reconnect_min_s=0.1, reconnect_max_s=0.5,
        tls=True, tls_ca_file=str(pki.ca), tls_cert_file=str(pki.client_cert),
        tls_key_file=str(pki.client_key)), bus)
    no_client_cert = MqttPublisher(MqttConfig(
        enabled=True, port=tls_port, prefix="emo", reconnect_min_s=0.1, reconnect_max_s=0.5,
        tls=True, tls_ca_file=str(pki.ca), client_id="no-cert"), EventBus())
    collector = Collector(broker.port)
    async with running(collector.run()):
        await collector.ready()
        async with running(publisher.run(), no_client_cert.run()):
            bus.publish(sample_emotion("s1", "mono", 0))
            got = await collector.wait_for("utterance.emotion", 1, timeout=TIMEOUT_S)
            assert await publisher.drain(TIMEOUT_S)
            async with asyncio.timeout(TIMEOUT_S):  # refused by the broker's TLS listener
                while no_client_cert.last_error is None:
                    await asyncio.sleep(0.05)
            assert not no_client_cert.connected and no_client_cert.sent == 0
    assert got[0]["utterance_id"] == "s1/mono/0"
