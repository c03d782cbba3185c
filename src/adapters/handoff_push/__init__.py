"""Live push: an in-process hub and presence, and PostgreSQL LISTEN/NOTIFY across processes."""

from handoff_push.inprocess import InProcessHub, InProcessPresence, StreamSource, Subscription
from handoff_push.pgnotify import PgNotifyHub

__all__ = ["InProcessHub", "InProcessPresence", "PgNotifyHub", "StreamSource", "Subscription"]
