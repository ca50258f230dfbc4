"""Audio constants shared by every package: one sample rate, one frame rate.

Everything inside the process is mono float32 at ``SAMPLE_RATE``; sources
resample once at the edge. Every audio encoder gives ``FRAMES_PER_SECOND``
frames (20 ms each), so word times in seconds map to frames as
``round(t * FRAMES_PER_SECOND)``.
"""

from __future__ import annotations

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 50
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND  # 320 samples = 20 ms
