"""A webhook that receives notifications: POSTed JSON, retried with backoff while the receiver is
down or answers 408/429/5xx (tenacity), for as long as that lasts; a 4xx is a refusal for good.

Two bodies: `json` (the record as on its topic, with what the notifier adds) for anything that
reads JSON, and `slack` (`{"text": ...}` in Slack's mrkdwn), which Slack's incoming webhooks and
the many services that copy them (Mattermost, Rocket.Chat, Teams' Slack-compatible connectors)
accept as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never, wait_exponential_jitter

from domain.notifications import Notification
from domain.ports import NotificationRefused

log = structlog.get_logger("stockanomaly.notifier")


class WebhookUnavailable(Exception):
    """The receiver could not be reached, timed out, or answered 408, 429 or 5xx: worth retrying."""


def json_body(n: Notification) -> dict[str, Any]:
    return {"kind": n.kind, "id": n.id, "symbol": n.symbol, "title": n.title, "text": n.text,
            "severity": n.severity, "score": n.score, "session": n.session, "ts_local": n.ts_local,
            "held_back": n.held_back, n.kind: n.record}


def slack_body(n: Notification) -> dict[str, Any]:
    when = n.ts_local[:23].replace("T", " ") if n.ts_local else str(n.ts_event)
    more = f"\n_{n.held_back} more for {n.symbol} held back since the last message_" if n.held_back else ""
    session = f" {n.session.replace('_', '-')}" if n.session else ""
    return {"text": f"*{n.title}* {when}{session}\n{n.text}\n`{n.kind} {n.id}`{more}"}


class WebhookChannel:
    def __init__(self, url: str, style: Literal["json", "slack"] = "json", timeout_s: float = 10.0,
                 first_wait_s: float = 0.5, max_wait_s: float = 60.0,
                 on_retry: Callable[[], None] | None = None) -> None:
        """`on_retry` is called at each retry as it happens (a metric that moves during an outage)."""
        self.url = url
        self.style = style
        # Logs name a webhook by its host only: the path and query of a Slack (or any) webhook URL
        # are its secret.
        self.name = f"{style}:{urlsplit(url).scheme}://{urlsplit(url).netloc.rsplit('@', 1)[-1]}"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.wait = wait_exponential_jitter(multiplier=first_wait_s, jitter=first_wait_s, max=max_wait_s)
        self.retries = 0
        self.on_retry = on_retry
        self._session: aiohttp.ClientSession | None = None

    async def send(self, notification: Notification) -> None:
        body = slack_body(notification) if self.style == "slack" else json_body(notification)
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(WebhookUnavailable), wait=self.wait,
                                           stop=stop_never, before_sleep=self._retrying, reraise=True):
            with attempt:
                await self._post(body)

    async def _post(self, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            # Not followed: a 301/302 turns the POST into a GET without the body, which the target
            # answers 200, and the message would count as delivered while it went nowhere.
            async with self._session.post(self.url, json=body, allow_redirects=False) as response:
                text = (await response.text(errors="replace"))[:200]  # only for the log: any bytes
                if 300 <= response.status < 400:
                    raise NotificationRefused(
                        f"{self.name} answered HTTP {response.status}, a redirect to "
                        f"{response.headers.get('Location', '(no Location)')}: not followed (the message would "
                        "arrive as a GET without its body); give the webhook's final URL")
                if response.status in (408, 429) or response.status >= 500:
                    raise WebhookUnavailable(f"HTTP {response.status}: {text}")
                if response.status >= 400:
                    raise NotificationRefused(f"{self.name} refused it: HTTP {response.status}: {text}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WebhookUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _retrying(self, state: RetryCallState) -> None:
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry()
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("webhook_retry", webhook=self.name, attempt=state.attempt_number, error=str(error)[:300],
                    next_in_s=round(state.upcoming_sleep, 2))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
