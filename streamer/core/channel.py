"""The one seam between audio and recognition: a channel.

Every source is a channel: a file, the microphone, stdin, and each party of a
call taken in by ``emotion-stream serve``. ``Recognizer.run_channel`` takes any
object with this shape and nothing else, so ``run`` and ``serve`` share one
recognition path. A channel yields 16 kHz mono ``AudioChunk``s and, where the
transport says the audio stops for a while (AudioHook hold), an ``AudioPause``;
when its chunks run out, ``end_reason`` says why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

from streamer.core.messages import AudioChunk, AudioPause

# "end_of_input": the source ended normally (end of file, the call was ended);
# "client_closed": an ingest client went away without ending its call;
# "shutdown": the service cut the call at its drain deadline (SIGTERM).
EndReason = Literal["end_of_input", "client_closed", "shutdown"]


class Channel(Protocol):
    @property
    def stream_id(self) -> str: ...

    @property
    def channel(self) -> str: ...

    def describe(self) -> str:
        """Where the audio comes from, for ``stream.started.source``."""
        ...

    def chunks(self) -> AsyncIterator[AudioChunk | AudioPause]: ...

    @property
    def input_rate(self) -> int | None:
        """The audio's sample rate at its source, before the 16 kHz resampling at the edge
        (8 kHz channels go to ``asr.model_8k``); None when unknown."""
        ...

    @property
    def end_reason(self) -> EndReason:
        """Why ``chunks()`` ended; read once it is exhausted."""
        ...
