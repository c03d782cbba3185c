"""Mail senders: SMTP over aiosmtplib, and a Maildir (the embedded default)."""
