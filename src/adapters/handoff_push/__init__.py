"""Live push: an in-process hub and presence, and PostgreSQL LISTEN/NOTIFY across processes."""

from handoff_push.inprocess import InProcessHub, InProcessPresence, Subscription
from handoff_push.pgnotify import PgNotifyHub

__all__ = ["InProcessHub", "InProcessPresence", "PgNotifyHub", "Subscription"]
