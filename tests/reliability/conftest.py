"""Hypothesis profiles for the reliability suite.

``HYPOTHESIS_PROFILE=deep`` runs many more examples (the figures in docs/reliability.md);
the default keeps the suite quick on a 2-core machine. No example database is written
(the checkout is shared); a failure prints its shrunk example and a reproduction blob.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=200, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("deep", max_examples=5000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
