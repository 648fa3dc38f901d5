"""Webhooks: notifications posted over HTTP, as generic JSON or as a Slack message."""

from adapters.webhook.channel import WebhookChannel, json_body, slack_body

__all__ = ["WebhookChannel", "json_body", "slack_body"]
