"""What the tests and the benchmarks share (issue 32): synthesised speech, a real Mosquitto
broker, free ports, the dashboard server with headless Chromium's settings, and synthetic
calls built with the real event builders.

Not shipped (pyproject's package discovery names only streamer, models and
offline_training); importable from the repository root like ``tests`` and ``bench``.
Import rule (``tests/test_import_cycles.py``): ``harness`` imports neither ``tests`` nor
``bench``; ``bench`` never imports ``tests``; the shipped packages import none of the three.
"""
