"""Outgoing webhooks over HTTP (SPEC §14): signed POSTs with httpx, and the target check that
keeps them off loopback, private and link-local addresses."""

from handoff_webhook.sender import HttpWebhookSender, WebhookSettings
from handoff_webhook.targets import PrivateTargetRefused, TargetGuard

__all__ = ["HttpWebhookSender", "PrivateTargetRefused", "TargetGuard", "WebhookSettings"]
