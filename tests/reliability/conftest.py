"""Hypothesis profiles for the reliability suite.

``HYPOTHESIS_PROFILE=deep`` runs many more examples (the figures in docs/reliability.md);
the default keeps the suite quick on a 2-core machine. No example database is written
(the checkout is shared); a failure prints its shrunk example and a reproduction blob.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from harness.broker import Broker

settings.register_profile("default", max_examples=200, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("deep", max_examples=5000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def password_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Mosquitto broker that only admits user 'streamer' with password 'right'."""
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "streamer", "right"],
                   check=True, capture_output=True, timeout=30)
    broker = Broker(tmp_path)
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true",
                                                           "allow_anonymous false")
                           + f"password_file {passwords}\n"
                           # as root Mosquitto would read it as user 'mosquitto', who cannot
                           # enter pytest's private tmp dir; no effect for other users
                           "user root\n")
    yield broker.start()
    broker.stop()
