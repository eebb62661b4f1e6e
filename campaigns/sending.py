"""Sending: rendering, MIME building, SMTP and the classification of replies,
and the chunk loop that the huey tasks run.

One chunk task claims up to EMAIL_CHUNK_SIZE deliveries of one burst, sends them
over ONE SMTP connection (reconnecting when it drops), and writes the outcomes as
grouped UPDATEs every few dozen messages, renewing its lease as it goes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import smtplib
import socket
import ssl
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.utils import formataddr, formatdate
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from campaigns.ratelimit import get_rate_limiter
from campaigns.templating import CompiledBurst, TemplateProblem, compile_burst, member_context

logger = logging.getLogger(__name__)

UNSUBSCRIBE_SALT = "emailer.unsubscribe"
FLUSH_EVERY = 50
FLUSH_SECONDS = 1.0
DOT_LINE = re.compile(rb"(?m)^\.")
ENHANCED_CODE = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


# --- classification ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str = ""
    transient: bool = False  # worth another try later (4xx, dropped connection)
    reconnect: bool = False  # the connection is unusable after this
    smtp_tried: bool = True  # counts as an attempt
    burst_fault: str = ""  # the whole burst must pause (auth refused, sender refused)


SENT = Outcome(DeliveryStatus.SENT)


def _text(message: bytes | str) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return " ".join(message.split())


def classify(code: int, message: bytes | str, *, stage: str) -> Outcome:
    """Map one SMTP reply to a delivery outcome (SPEC section 4)."""
    text = _text(message)
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
    detail = _text(str(exc)) or kind
    if isinstance(exc, (socket.timeout, TimeoutError)):
        detail = f"timed out after {settings.EMAIL_TIMEOUT:g} s"
    return Outcome(
        DeliveryStatus.CONNECTION_ERROR,
        f"Connection error: {detail} ({kind})",
        transient=True,
        reconnect=True,
    )


# --- SMTP ----------------------------------------------------------------------------


class BurstFault(Exception):
    """Nothing can be sent for this burst until someone acts (credentials, sender)."""


class SmtpSession:
    """One SMTP connection reused for many messages, reopened when it drops."""

    def __init__(self) -> None:
        self.conn: smtplib.SMTP | None = None
        # (sender, recipient) whose envelope was already written ahead.
        self.announced: tuple[str, str] | None = None
        self.needs_rset = False

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> smtplib.SMTP:
        timeout = settings.EMAIL_TIMEOUT
        if settings.EMAIL_USE_SSL:
            conn = smtplib.SMTP_SSL(
                settings.EMAIL_HOST,
                settings.EMAIL_PORT,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = smtplib.SMTP(settings.EMAIL_HOST, settings.EMAIL_PORT, timeout=timeout)
        try:
            conn.ehlo()
            if settings.EMAIL_USE_TLS:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            user, password = settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD
            if user and password:
                try:
                    conn.login(user, password)
                except smtplib.SMTPAuthenticationError as exc:
                    raise BurstFault(
                        f"SMTP authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}"
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise BurstFault(
                        "SMTP server does not offer AUTH but a user and password are set"
                    ) from None
        except BaseException:
            _close_quietly(conn)
            raise
        return conn

    def close(self) -> None:
        if self.announced is not None:
            self.drop()  # the server waits for content we will not send
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                _close_quietly(self.conn)
            self.conn = None

    def drop(self) -> None:
        self.announced = None
        self.needs_rset = False
        if self.conn is not None:
            _close_quietly(self.conn)
            self.conn = None

    def deliver(self, sender: str, recipient: str, message: bytes, *, then: str | None = None) -> Outcome:
        """One transaction; every failure becomes an Outcome.

        `then` is the next recipient: with PIPELINING its envelope (RSET, MAIL,
        RCPT, DATA) travels in the same write as this message's content, so a
        message costs one round trip (RFC 2920 allows content first in a group)."""
        try:
            if self.conn is None:
                self.conn = self.open()
                self.announced = None
            outcome = self._transaction(self.conn, sender, recipient, message, then)
        except BurstFault as exc:
            self.drop()
            return Outcome(DeliveryStatus.PENDING, str(exc), smtp_tried=False, burst_fault=str(exc))
        except smtplib.SMTPResponseException as exc:
            outcome = classify(exc.smtp_code, exc.smtp_error, stage="connect")
            outcome = Outcome(DeliveryStatus.CONNECTION_ERROR, outcome.error, transient=True, reconnect=True)
        except UnicodeError as exc:  # an address that cannot be written as ASCII
            self.drop()
            return Outcome(
                DeliveryStatus.OTHER_ERROR, f"Could not encode the envelope: {exc}", smtp_tried=False
            )
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            outcome = connection_failure(exc)
        if outcome.reconnect:
            self.drop()
        return outcome

    @staticmethod
    def _envelope(sender: str, recipient: str, *, rset: bool) -> bytes:
        # Written directly (addresses are clean ASCII already): smtplib's mail()
        # and rcpt() re-parse every address, which costs more than the message.
        # RSET only after a transaction that ended before its content: the end
        # of DATA closes a transaction, whatever its reply.
        head = "RSET\r\n" if rset else ""
        return f"{head}MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii")

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, recipient: str, message: bytes, then: str | None
    ) -> Outcome:
        pipelining = conn.does_esmtp and conn.has_extn("pipelining")
        if pipelining:
            if self.announced != (sender, recipient):
                rset = self.needs_rset
                conn.send(self._envelope(sender, recipient, rset=rset))
            else:
                rset = False  # announced right after a finished transaction
            self.announced = None
            if rset:
                conn.getreply()
            mail, rcpt, data = conn.getreply(), conn.getreply(), conn.getreply()
            # Until this transaction reaches the end of DATA, the next one resets.
            self.needs_rset = True
        else:
            mail, rcpt, data = self._one_by_one(conn, sender, recipient)
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            conn.send(b".\r\n")  # a server that started DATA anyway: end it empty
            conn.getreply()
        if mail[0] != 250:
            if 500 <= mail[0] < 600:
                raise BurstFault(f"Sender {sender} refused: {mail[0]} {_text(mail[1])}")
            return self._failed(classify(mail[0], mail[1], stage="mail"))
        if rcpt[0] not in (250, 251):
            return self._failed(classify(rcpt[0], rcpt[1], stage="rcpt"))
        if data[0] != 354:
            return self._failed(classify(data[0], data[1], stage="data"))
        payload = DOT_LINE.sub(b"..", message) + b".\r\n"
        if pipelining and then:
            payload += self._envelope(sender, then, rset=False)
        conn.send(payload)
        if pipelining and then:
            self.announced = (sender, then)
        code, reply = conn.getreply()
        self.needs_rset = False
        if code != 250:
            return self._failed(classify(code, reply, stage="data"))
        return SENT

    def _one_by_one(self, conn: smtplib.SMTP, sender: str, recipient: str) -> tuple:
        refused = (503, b"5.5.1 Bad sequence of commands")
        conn.send(f"MAIL FROM:<{sender}>\r\n".encode("ascii"))
        mail = conn.getreply()
        if mail[0] != 250:
            return mail, refused, refused
        conn.send(f"RCPT TO:<{recipient}>\r\n".encode("ascii"))
        rcpt = conn.getreply()
        if rcpt[0] not in (250, 251):
            return mail, rcpt, refused
        conn.send(b"DATA\r\n")
        return mail, rcpt, conn.getreply()

    def _failed(self, outcome: Outcome) -> Outcome:
        # Without pipelining, reset now; with it, every envelope starts with RSET.
        if not outcome.reconnect and self.conn is not None and not self.conn.has_extn("pipelining"):
            try:
                self.conn.rset()
            except (smtplib.SMTPException, OSError):
                self.drop()
        return outcome


def _close_quietly(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass


@dataclass(frozen=True)
class SmtpCheck:
    ok: bool
    message: str


def smtp_check() -> SmtpCheck:
    """Connect, EHLO, STARTTLS and AUTH as configured, QUIT; no message is sent."""
    where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    session = SmtpSession()
    try:
        session.conn = session.open()
    except BurstFault as exc:
        return SmtpCheck(False, f"{where}: {exc}")
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return SmtpCheck(False, f"{where}: {connection_failure(exc).error}")
    finally:
        session.close()
    return SmtpCheck(True, f"Connected to {where}" + (" with STARTTLS" if settings.EMAIL_USE_TLS else ""))


# --- messages --------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _unsubscribe_key(secret: str) -> bytes:
    # Derived once per process; per-token key derivation cost more than the rest
    # of a message's headers.
    return hashlib.sha256(f"{UNSUBSCRIBE_SALT}:{secret}".encode()).digest()


def _unsubscribe_signature(member_id: str) -> str:
    digest = hmac.new(_unsubscribe_key(settings.SECRET_KEY), member_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def unsubscribe_token(member_id: int) -> str:
    """Stable (no timestamp): the same member always gets the same link."""
    return f"{member_id}.{_unsubscribe_signature(str(member_id))}"


def member_id_from_token(token: str) -> int:
    """Raises signing.BadSignature for a tampered token."""
    member_id, _, signature = token.partition(".")
    if not (member_id.isascii() and member_id.isdigit()):
        raise signing.BadSignature("bad unsubscribe token")
    expected = _unsubscribe_signature(member_id).encode()
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
        raise signing.BadSignature("bad unsubscribe token")
    return int(member_id)


@lru_cache(maxsize=4)
def _unsubscribe_prefix(site_url: str) -> str:
    # reverse() once: per message it costs more than rendering the templates.
    return site_url + reverse("unsubscribe", args=["TOKEN"]).replace("TOKEN/", "")


def unsubscribe_url(member_id: int) -> str:
    return f"{_unsubscribe_prefix(settings.SITE_URL)}{unsubscribe_token(member_id)}/"


def header_safe(value: str) -> str:
    """Header values never carry CR/LF: they could add headers or recipients."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


_PLAIN_HEADER = re.compile(r"[ -~]{0,66}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 .'-]{1,60}")


def _encode_header(value: str) -> str:
    value = header_safe(value)
    if _PLAIN_HEADER.fullmatch(value) and "=?" not in value:
        return value  # short printable ASCII needs no encoding or folding
    return Header(value, "utf-8" if not value.isascii() else "us-ascii", maxlinelen=76).encode()


def _address(name: str, email: str) -> str:
    email = header_safe(email)
    name = header_safe(name)
    if not name:
        return email
    if _PLAIN_NAME.fullmatch(name) and "." not in name and "'" not in name:
        return f"{name} <{email}>"
    return formataddr((name, email), charset="utf-8")


@lru_cache(maxsize=2)
def _date_header(second: int) -> str:
    return formatdate(second, usegmt=True)


def _qp(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(data, istext=True)


def _html_document(html: str, title: str) -> str:
    if "<html" in html[:500].lower():
        return html
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n</head>\n<body>\n{html}\n</body>\n</html>\n"
    )


def _html_with_footer(html: str, footer: str) -> str:
    index = html.lower().rfind("</body>")
    if index == -1:
        return html + footer
    return html[:index] + footer + html[index:]


@dataclass
class PreparedBurst:
    """Everything about a burst's messages that is the same for every member."""

    burst_id: int
    subject_source: str
    compiled: CompiledBurst
    envelope_from: str
    from_header: str
    reply_to: str
    list_id: str
    domain: str
    attachments: list[bytes]  # complete MIME parts, encoded once
    boundary: str
    attachment_error: str = ""

    def build(
        self,
        *,
        delivery_id: int,
        to_email: str,
        to_name: str,
        context: dict[str, Any],
        subject_prefix: str = "",
        deadline: float | None = None,
    ) -> bytes:
        """One member's message; raises TemplateProblem when a template limit is hit
        (`deadline`: see CompiledBurst.render)."""
        subject, text, html = self.compiled.render(context, deadline=deadline)
        subject = subject_prefix + subject
        url = context["unsubscribe_url"]
        text = (
            text.rstrip()
            + "\n\n-- \nYou receive this because you are a member. "
            + f"To stop receiving these emails, unsubscribe: {url}\n"
        )
        headers = [
            f"From: {self.from_header}",
            f"To: {_address(to_name, to_email)}",
            f"Subject: {_encode_header(subject)}",
            f"Date: {_date_header(int(time.time()))}",
            f"Message-ID: {message_id(burst_id=self.burst_id, delivery_id=delivery_id, sender=self.envelope_from)}",
        ]
        if self.reply_to:
            headers.append(f"Reply-To: {self.reply_to}")
        unsub = f"<{url}>"
        if settings.UNSUBSCRIBE_MAILTO:
            unsub += f", <mailto:{settings.UNSUBSCRIBE_MAILTO}?subject=unsubscribe>"
        headers += [
            f"List-Id: {self.list_id}",
            f"List-Unsubscribe: {unsub}",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "MIME-Version: 1.0",
        ]
        text_part = (
            b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
            + _qp(text)
        )
        if html is not None:
            footer = (
                '\n<hr>\n<p style="font-size:12px;color:#666666">You receive this because you are a member. '
                f'<a href="{escape(url)}">Unsubscribe</a> to stop receiving these emails.</p>\n'
            )
            html_doc = _html_with_footer(_html_document(html, subject), footer)
            html_part = (
                b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
                + _qp(html_doc)
            )
            alt = self.boundary + "a"
            body = _multipart("alternative", alt, [text_part, html_part])
        else:
            body = text_part
        if self.attachments:
            mixed = self.boundary + "m"
            body = _multipart("mixed", mixed, [body, *self.attachments])
        head = "\n".join(headers).encode("ascii") + b"\n"
        # SMTP wants CRLF line ends, and smtplib does not convert bytes.
        return (head + body).replace(b"\n", b"\r\n")


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    b = boundary.encode("ascii")
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n\n'.encode("ascii")]
    for part in parts:
        out.append(b"--" + b + b"\n" + part.rstrip(b"\n") + b"\n")
    out.append(b"--" + b + b"--\n")
    return b"".join(out)


def _attachment_part(filename: str, content_type: str, data: bytes) -> bytes:
    if "/" not in content_type or not content_type.isascii() or any(c in content_type for c in '\r\n;"'):
        content_type = "application/octet-stream"
    safe_name = header_safe(filename).replace('"', "'") or "attachment"
    if safe_name.isascii():
        disposition = f'attachment; filename="{safe_name}"'
    else:
        disposition = f"attachment; filename*=utf-8''{quote(safe_name)}"
    encoded = base64.encodebytes(data)
    return (
        f"Content-Type: {content_type}\nContent-Transfer-Encoding: base64\nContent-Disposition: {disposition}\n\n"
    ).encode() + encoded


def prepare_burst(burst: EmailBurst) -> PreparedBurst:
    return _prepare_cached(burst.pk, burst.updated_at)


@lru_cache(maxsize=16)
def _prepare_cached(burst_id: int, updated_at: datetime) -> PreparedBurst:
    burst = EmailBurst.objects.get(pk=burst_id)
    compiled = compile_burst(subject=burst.subject, body=burst.body, html_body=burst.html_body)
    domain = burst.sender.rsplit("@", 1)[-1].lower() or "localhost"
    attachments, error = [], ""
    for att in burst.attachments.all():
        try:
            with att.file.open("rb") as fh:
                attachments.append(_attachment_part(att.filename, att.content_type, fh.read()))
        except OSError as exc:
            error = f"Attachment {att.filename!r} could not be read: {exc.strerror or exc}"
    return PreparedBurst(
        burst_id=burst.pk,
        subject_source=burst.subject,
        compiled=compiled,
        envelope_from=burst.sender,
        from_header=_address(burst.from_name, burst.sender),
        reply_to=_address("", burst.reply_to) if burst.reply_to else "",
        list_id=f"Emailer bursts <bursts.{domain}>",
        domain=domain,
        attachments=attachments,
        boundary=f"=_emailer_{uuid.uuid4().hex}",
        attachment_error=error,
    )


def context_for(*, burst_subject: str, member: dict[str, Any], member_id: int | None) -> dict[str, Any]:
    return member_context(
        first_name=member.get("first_name") or "",
        middle_name=member.get("middle_name") or "",
        last_name=member.get("last_name") or "",
        email=member.get("email") or "",
        username=member.get("username") or "",
        subject=burst_subject,
        unsubscribe_url=unsubscribe_url(member_id) if member_id else settings.SITE_URL,
    )


_NOT_IN_ADDRESS = re.compile(r"[\s<>,;\"()\[\]\\]")


def encode_recipient(address: str) -> str:
    """The envelope address in ASCII (IDNA domain).

    Raises ValueError for anything but one plain address (a CR/LF or a comma
    could name another mailbox), UnicodeError when it cannot be ASCII."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "@" in local or _NOT_IN_ADDRESS.search(address):
        raise ValueError(f"{address!r} is not one valid email address")
    if not local.isascii():
        raise UnicodeError("the address's local part is not ASCII (needs SMTPUTF8)")
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def message_id(*, burst_id: int, delivery_id: int, sender: str) -> str:
    """Stable across retries, so a receiver can tell a retry from a new message."""
    domain = sender.rsplit("@", 1)[-1].lower() or "localhost"
    return f"<burst{burst_id}.delivery{delivery_id}@{domain}>"


# --- claiming ------------------------------------------------------------------------------


def _available(burst_id: int, now: datetime) -> Q:
    return (
        Q(burst_id=burst_id, status=DeliveryStatus.PENDING)
        & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )


def claim(*, burst_id: int, token: str, limit: int) -> int:
    """Atomically take up to `limit` deliveries of a burst; returns how many."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT)
    available = Delivery.objects.filter(_available(burst_id, now)).order_by("id")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            ids = list(available.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
            if not ids:
                return 0
            return Delivery.objects.filter(id__in=ids).update(claim_token=token, lease_expires_at=lease)
        # SQLite: one conditional UPDATE; writers are serialised, so only one wins each row.
        return Delivery.objects.filter(id__in=available.values("id")[:limit]).update(
            claim_token=token, lease_expires_at=lease
        )


def release(*, token: str) -> int:
    return Delivery.objects.filter(claim_token=token, status=DeliveryStatus.PENDING).update(
        claim_token="", lease_expires_at=None
    )


# --- recording outcomes -----------------------------------------------------------------------


@dataclass
class Recorder:
    """Collects outcomes and writes them as grouped UPDATEs."""

    burst_id: int
    token: str
    sent: list[int] = field(default_factory=list)
    others: dict[tuple, list[int]] = field(default_factory=lambda: defaultdict(list))
    retry_at: list[datetime] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)
    count: int = 0
    done: int = 0

    def add(self, delivery_id: int, attempts_before: int, outcome: Outcome) -> None:
        self.count += 1
        if outcome.status == DeliveryStatus.SENT:
            self.sent.append(delivery_id)
            return
        increment = 1 if outcome.smtp_tried else 0
        attempts = attempts_before + increment
        if outcome.transient and attempts < settings.EMAIL_MAX_ATTEMPTS:
            delay = settings.EMAIL_RETRY_DELAY * (2 ** max(0, attempts - 1))
            self.others[(DeliveryStatus.PENDING, outcome.error, increment, delay)].append(delivery_id)
        else:
            self.others[(outcome.status, outcome.error, increment, None)].append(delivery_id)

    def due(self) -> bool:
        return self.count >= FLUSH_EVERY or (
            self.count and time.monotonic() - self.last_flush >= FLUSH_SECONDS
        )

    def flush(self) -> None:
        if not self.count:
            return
        now = timezone.now()
        mine = Delivery.objects.filter(claim_token=self.token, status=DeliveryStatus.PENDING)
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Status writes do not wait for the WAL flush (3-15 ms per commit
                # here). Only a crash of PostgreSQL itself can lose the last
                # fraction of a second of them: those deliveries go back to
                # pending and are sent again, as if they had been in flight.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            if self.sent:
                mine.filter(id__in=self.sent).update(
                    status=DeliveryStatus.SENT,
                    sent_at=now,
                    attempts=F("attempts") + 1,
                    error_message="",
                    claim_token="",
                    lease_expires_at=None,
                    next_attempt_at=None,
                    updated_at=now,
                )
            for (status, error, increment, delay), ids in self.others.items():
                next_at = now + timedelta(seconds=delay) if delay is not None else None
                if next_at:
                    self.retry_at.append(next_at)
                mine.filter(id__in=ids).update(
                    status=status,
                    error_message=error,
                    attempts=F("attempts") + increment,
                    claim_token="",
                    lease_expires_at=None,
                    next_attempt_at=next_at,
                    updated_at=now,
                )
            # Still working on the rest of the chunk: renew the lease, a third of
            # the way through it (renewing every flush rewrote every row each time).
            if time.monotonic() - self.renewed >= settings.EMAIL_CLAIM_TIMEOUT / 3:
                mine.update(lease_expires_at=now + timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT))
                self.renewed = time.monotonic()
        self.done += self.count
        self.sent, self.others, self.count = [], defaultdict(list), 0
        self.last_flush = time.monotonic()


# --- the chunk loop ---------------------------------------------------------------------------


@dataclass
class ChunkResult:
    claimed: int = 0
    processed: int = 0
    stopped: str = ""
    retry_at: list[datetime] = field(default_factory=list)


MEMBER_FIELDS = ("member__first_name", "member__middle_name", "member__last_name", "member__username")


def chunk_send(*, burst_id: int, limit: int | None = None) -> ChunkResult:
    """Claim one chunk of a burst's deliveries and send them on one connection."""
    from campaigns import services

    result = ChunkResult()
    burst = EmailBurst.objects.filter(pk=burst_id).first()
    if burst is None or burst.status != BurstStatus.SENDING:
        # Paused, cancelled or deleted since the task was queued: claim nothing.
        result.stopped = burst.status if burst else "deleted"
        return result
    token = uuid.uuid4().hex
    result.claimed = claim(burst_id=burst_id, token=token, limit=limit or settings.EMAIL_CHUNK_SIZE)
    if not result.claimed:
        services.burst_finish_if_done(burst_id=burst_id)
        return result
    recorder = Recorder(burst_id=burst_id, token=token)
    try:
        try:
            prepared = prepare_burst(burst)
        except TemplateProblem as exc:
            # Saved before a limit it now breaks (a `{% now %}` format too long):
            # retrying the chunk would fail the same way for ever.
            _fail_claimed(token=token, error=f"Could not compile the message: {exc}")
        else:
            _send_claimed(burst, prepared, recorder, result)
    finally:
        recorder.flush()
        _settle_leftovers(burst_id=burst_id, token=token)
        result.processed = recorder.done
        result.retry_at = recorder.retry_at
    services.burst_finish_if_done(burst_id=burst_id)
    return result


def _fail_claimed(*, token: str, error: str) -> None:
    Delivery.objects.filter(claim_token=token, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.OTHER_ERROR,
        error_message=error,
        claim_token="",
        lease_expires_at=None,
        updated_at=timezone.now(),
    )


def _settle_leftovers(*, burst_id: int, token: str) -> None:
    status = EmailBurst.objects.filter(pk=burst_id).values_list("status", flat=True).first()
    if status == BurstStatus.CANCELLED:
        Delivery.objects.filter(claim_token=token, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.SKIPPED,
            error_message="Burst cancelled",
            claim_token="",
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
    else:
        release(token=token)


WINDOW = 50  # messages built ahead, so each can announce the next one's envelope


def _send_claimed(
    burst: EmailBurst, prepared: PreparedBurst, recorder: Recorder, result: ChunkResult
) -> None:
    rows = (
        Delivery.objects.filter(claim_token=recorder.token, status=DeliveryStatus.PENDING)
        .order_by("id")
        .values_list("id", "email", "attempts", "member_id", *MEMBER_FIELDS)
    )
    window_size = 2 if prepared.attachments else WINDOW  # big messages: keep memory small
    sender = _Sender(burst=burst, prepared=prepared, recorder=recorder, result=result)
    with SmtpSession() as smtp:
        sender.smtp = smtp
        window: list[tuple[int, int, str, bytes]] = []
        # A list, not an open cursor: statuses are written while the chunk goes
        # on, and the chunk is bounded by EMAIL_CHUNK_SIZE.
        for delivery_id, email, attempts, member_id, first, middle, last, username in list(rows):
            if prepared.attachment_error:
                recorder.add(
                    delivery_id,
                    attempts,
                    Outcome(DeliveryStatus.OTHER_ERROR, prepared.attachment_error, smtp_tried=False),
                )
                continue
            if member_id is None or not email:
                recorder.add(
                    delivery_id,
                    attempts,
                    Outcome(DeliveryStatus.SKIPPED, "Skipped: the member was deleted", smtp_tried=False),
                )
                continue
            member = {
                "first_name": first,
                "middle_name": middle,
                "last_name": last,
                "email": email,
                "username": username,
            }
            try:
                recipient = encode_recipient(email)
                context = context_for(
                    burst_subject=prepared.subject_source, member=member, member_id=member_id
                )
                to_name = " ".join(p for p in (first, last) if p)
                message = prepared.build(
                    delivery_id=delivery_id, to_email=recipient, to_name=to_name, context=context
                )
            except Exception as exc:  # one member's bad data never stops the burst
                # A TemplateProblem names the part and why: a template limit (size,
                # loop iterations, time) hit, or a failure, for this member's data.
                what = "render" if isinstance(exc, TemplateProblem) else "build"
                logger.warning(
                    "burst %s delivery %s: cannot %s message: %s", burst.pk, delivery_id, what, exc
                )
                recorder.add(
                    delivery_id,
                    attempts,
                    Outcome(
                        DeliveryStatus.OTHER_ERROR, f"Could not {what} the message: {exc}", smtp_tried=False
                    ),
                )
                continue
            window.append((delivery_id, attempts, recipient, message))
            if len(window) >= window_size:
                if sender.send_window(window):
                    return
                window = []
        if window:
            sender.send_window(window)


@dataclass
class _Sender:
    burst: EmailBurst
    prepared: PreparedBurst
    recorder: Recorder
    result: ChunkResult
    smtp: SmtpSession | None = None
    reset_streak: bool = False

    def send_window(self, window: list[tuple[int, int, str, bytes]]) -> bool:
        """Send built messages in order; True when the chunk must stop."""
        from campaigns import services

        limiter = get_rate_limiter()
        recorder, burst = self.recorder, self.burst
        for index, (delivery_id, attempts, recipient, message) in enumerate(window):
            if recorder.due():
                recorder.flush()
                status = EmailBurst.objects.filter(pk=burst.pk).values_list("status", flat=True).first()
                if status != BurstStatus.SENDING:
                    self.result.stopped = status or "deleted"
                    return True
            then = window[index + 1][2] if index + 1 < len(window) else None
            limiter.acquire()
            outcome = self.smtp.deliver(self.prepared.envelope_from, recipient, message, then=then)
            if outcome.burst_fault:
                recorder.flush()
                services.burst_pause(burst_id=burst.pk, reason=outcome.burst_fault, allow_paused=True)
                self.result.stopped = BurstStatus.PAUSED
                return True
            recorder.add(delivery_id, attempts, outcome)
            if outcome.status == DeliveryStatus.CONNECTION_ERROR:
                streak = _count_connection_failure(burst.pk)
                if streak >= settings.EMAIL_PAUSE_AFTER:
                    recorder.flush()
                    services.burst_pause(
                        burst_id=burst.pk,
                        reason=f"{streak} consecutive connection failures; last: {outcome.error}",
                        allow_paused=True,
                    )
                    self.result.stopped = BurstStatus.PAUSED
                    return True
                self.reset_streak = False
            elif not self.reset_streak:
                # The server answered: the burst's streak of connection failures ends.
                EmailBurst.objects.filter(pk=burst.pk, connection_failures__gt=0).update(
                    connection_failures=0
                )
                self.reset_streak = True
        return False


def _count_connection_failure(burst_id: int) -> int:
    """Count a connection failure for the burst, across all workers; returns the streak."""
    EmailBurst.objects.filter(pk=burst_id).update(connection_failures=F("connection_failures") + 1)
    return EmailBurst.objects.filter(pk=burst_id).values_list("connection_failures", flat=True).first() or 0
