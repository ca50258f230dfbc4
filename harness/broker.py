"""A real Mosquitto broker on a loopback port (the tests' ``broker`` fixtures, benchmarks)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.net import free_port, wait_for_port


class Broker:
    """A real Mosquitto broker on a loopback port; can be stopped and restarted."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.binary = binary
        self.port = port or free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        # Persistence keeps subscribers' sessions (and their queued QoS 1 messages) across a
        # broker restart, so tests can tell publisher losses from subscriber reconnect races.
        store = workdir / f"mosquitto-{self.port}"
        store.mkdir(exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {store}/\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
