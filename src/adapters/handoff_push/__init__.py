"""Live push: an in-process hub and presence, and PostgreSQL LISTEN/NOTIFY across processes."""
