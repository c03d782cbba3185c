"""Mail senders: SMTP over aiosmtplib, and a Maildir (the embedded default); and the address
check members are held to (email-validator)."""

from handoff_mail.address import check_address
from handoff_mail.maildir import MaildirSender
from handoff_mail.message import build_message
from handoff_mail.settings import DEFAULT_FROM, SmtpSettings
from handoff_mail.smtp import SmtpSender

__all__ = [
    "DEFAULT_FROM",
    "MaildirSender",
    "SmtpSender",
    "SmtpSettings",
    "build_message",
    "check_address",
]
