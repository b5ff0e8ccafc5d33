"""Suite-wide settings and fixtures: the hypothesis profile CI runs with, a real Mosquitto."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.browser import browser  # noqa: F401  (a real browser for any test)
from tests.mqtt_broker import mosquitto  # noqa: F401  (a real broker for any test)

settings.register_profile(
    "ci",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
