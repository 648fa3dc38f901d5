"""The event loop's beat, what `stockanomaly_event_loop_blocked_seconds` is measured from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LOOP_BEAT_SECONDS = 1.0  # how often the event loop says it runs


async def beat_while_running(beat: Callable[[], None], seconds: float = LOOP_BEAT_SECONDS) -> None:
    """`beat` now and every `seconds` after, from the loop this runs on, until cancelled: a call that
    blocks the loop (a synchronous request, a post that never returns) stops the beats, and the gauge
    (read by the metrics endpoint's own thread) grows. For a process without Faust's timers (`notify`)."""
    while True:
        beat()
        await asyncio.sleep(seconds)  # a period, not a wait for something to happen
