"""What one SMTP reply, or one failed connection, means for a delivery."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from django.conf import settings

from campaigns.models import DeliveryStatus

ENHANCED_CODE = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str = ""
    transient: bool = False  # worth another try later (4xx, dropped connection)
    reconnect: bool = False  # the connection is unusable after this
    smtp_tried: bool = True  # counts as an attempt
    burst_fault: str = ""  # the whole burst must pause (auth refused, sender refused)


SENT = Outcome(DeliveryStatus.SENT)


def reply_text(message: bytes | str) -> str:
    """A server's reply on one line, whatever its encoding."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return " ".join(message.split())


def classify(code: int, message: bytes | str, *, stage: str) -> Outcome:
    """Map one SMTP reply to a delivery outcome: the enhanced status code when the
    server gives one (RFC 3463), else the basic code; only 4xx is worth a retry."""
    text = reply_text(message)
    error = f"{code} {text} (at {stage.upper()})".replace("  ", " ")
    reconnect = code == 421
    if 200 <= code < 300:
        return SENT
    if stage == "rcpt" and code == 552:
        # RFC 5321 section 4.5.3.1.10: 552 at RCPT is to be treated as temporary.
        return Outcome(DeliveryStatus.FAILED, error, transient=True, reconnect=reconnect)
    enhanced = ENHANCED_CODE.match(text)
    if enhanced:
        klass, subject, detail = enhanced.groups()
        if klass == "4":
            return Outcome(DeliveryStatus.FAILED, error, transient=True, reconnect=reconnect)
        if klass == "5":
            if subject == "1" or (subject == "2" and detail == "1"):
                return Outcome(DeliveryStatus.NOT_FOUND, error)
            return Outcome(DeliveryStatus.FAILED, error)
    if 400 <= code < 500:
        return Outcome(DeliveryStatus.FAILED, error, transient=True, reconnect=reconnect)
    if code in (550, 551, 553):
        return Outcome(DeliveryStatus.NOT_FOUND, error)
    if 500 <= code < 600:
        return Outcome(DeliveryStatus.FAILED, error)
    return Outcome(DeliveryStatus.OTHER_ERROR, f"Unexpected SMTP reply {error}", reconnect=True)


def connection_failure(exc: BaseException) -> Outcome:
    kind = type(exc).__name__
    detail = reply_text(str(exc)) or kind
    if isinstance(exc, (socket.timeout, TimeoutError)):
        detail = f"timed out after {settings.EMAIL_TIMEOUT:g} s"
    return Outcome(
        DeliveryStatus.CONNECTION_ERROR,
        f"Connection error: {detail} ({kind})",
        transient=True,
        reconnect=True,
    )
