"""What several test folders need alike (fresh databases, SMTP servers, the `handoff` command),
written once; the fixtures that use it stay in each folder's own conftest.py."""
