"""The worker (`entrypoints.worker`) with one fault, for the stuck-worker tests.

Run as `python -m faust -A stuck_worker_app worker`. The first take holding a trade of
STUCK_SYMBOL never ends, in the way STUCK_HOW says:

- `await`: its outputs wait for a delivery that never comes (as a take waits on a broker call that
  never answers); the event loop goes on, so timers and /metrics keep running.
- `block`: judging it blocks the event loop (as a call into a library that hangs does); only the
  metrics endpoint's own thread still answers.

Everything else is the production worker, unchanged.
"""

import asyncio
import os
import time

import numpy as np

from application.detect import DetectTrades
from application.publish import PublishOutcome

SYMBOL = os.environ["STUCK_SYMBOL"]
HOW = os.environ["STUCK_HOW"]
if HOW not in ("await", "block"):
    raise SystemExit(f"STUCK_HOW must be await or block, not {HOW!r}")

_judge, _publish = DetectTrades.__call__, PublishOutcome.__call__
stuck = False


def judge(self, trades: np.ndarray, *args, **kwargs):  # type: ignore[no-untyped-def]
    global stuck
    if len(trades) and bool(np.any(trades["symbol"] == SYMBOL)):
        stuck = True
        if HOW == "block":
            time.sleep(3600)
    return _judge(self, trades, *args, **kwargs)


async def publish(self, outcome, *args, **kwargs):  # type: ignore[no-untyped-def]
    if stuck:
        await asyncio.Event().wait()
    return await _publish(self, outcome, *args, **kwargs)


DetectTrades.__call__ = judge  # type: ignore[method-assign]
PublishOutcome.__call__ = publish  # type: ignore[method-assign]

from entrypoints.worker import app  # noqa: E402,F401 - after the fault is in place
