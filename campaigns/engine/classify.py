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
    relay_id: str = ""  # the relay's own id for an accepted message (its reply to DATA)


SENT = Outcome(DeliveryStatus.SENT)

# The relay's id in its reply to DATA, by server: Postfix "2.0.0 Ok: queued as 4ABC123";
# Exim "OK id=1abcde-000123-AB"; SES "Ok <0100018…@email.amazonses.com>" or
# "Ok 0100018…-000000"; Exchange "2.6.0 <id@host> [InternalId=…] Queued mail for
# delivery"; Sendmail "2.0.0 42P9CD0x012345 Message accepted for delivery"; Gmail
# "2.0.0 OK  1709630000 a1-20020a05… - gsmtp". It runs for every message sent: a
# substring test picks the one pattern to try (one regex of all of them cost 3 µs).
_ENHANCED_PREFIX = rb"^(?:[245]\.\d{1,3}\.\d{1,3} +)?"
_RELAY_PATTERNS = (
    (b"queued as ", re.compile(rb"queued as <?([\w.@-]{1,255})", re.IGNORECASE)),
    (b"<", re.compile(rb"<([\x21-\x3b\x3d\x3f-\x7e]{1,255})>")),  # before Exchange's "InternalId="
    (b"id=", re.compile(rb"\bid=([\w.-]{1,255})", re.IGNORECASE)),
    (b"gsmtp", re.compile(rb"([\w.-]{1,255}) +- +gsmtp\s*$", re.IGNORECASE)),
    (b"message accepted", re.compile(_ENHANCED_PREFIX + rb"(\w{6,64}) +message accepted", re.IGNORECASE)),
    (b"ok ", re.compile(_ENHANCED_PREFIX + rb"ok +([\w.-]{10,255})\s*$", re.IGNORECASE)),
)


def relay_id_from_reply(message: bytes) -> str:
    """The relay's id for the message it just accepted, "" when its reply names none."""
    lower = message.lower()
    for clue, pattern in _RELAY_PATTERNS:
        if clue in lower:
            match = pattern.search(message)
            return match.group(1).decode("ascii") if match else ""
    return ""


def sent(reply: bytes) -> Outcome:
    relay_id = relay_id_from_reply(reply)
    return Outcome(DeliveryStatus.SENT, relay_id=relay_id) if relay_id else SENT


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
