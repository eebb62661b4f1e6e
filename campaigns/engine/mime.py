"""Building a burst's messages: what is the same for every member is prepared
once per burst (compiled templates, encoded attachments, headers), then each
member's message is rendered and assembled as bytes ready for SMTP."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import formataddr, formatdate
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.utils.html import escape

from campaigns.engine.tokens import delivery_token, unsubscribe_url
from campaigns.models import EmailBurst
from campaigns.templating import CompiledBurst, compile_burst, member_context


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
        message_id: str | None = None,
        unsubscribe_mailto: bool = True,
    ) -> bytes:
        """One member's message; raises TemplateProblem when a template limit is hit
        (`deadline`: see CompiledBurst.render).

        A test send gives its own `message_id` (a fresh one per message) and leaves out
        the `mailto:` unsubscribe, which would unsubscribe whoever got the test."""
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
            f"Message-ID: {message_id or _delivery_message_id_at(self.domain, burst_id=self.burst_id, delivery_id=delivery_id)}",
        ]
        if self.reply_to:
            headers.append(f"Reply-To: {self.reply_to}")
        unsub = f"<{url}>"
        if settings.UNSUBSCRIBE_MAILTO and unsubscribe_mailto:
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


def context_for(
    *,
    burst_subject: str,
    member: dict[str, Any],
    member_id: int | None,
    unsubscribe_link: str | None = None,
) -> dict[str, Any]:
    """The template context of one member; `unsubscribe_link` replaces the member's own
    link (a test send's link, which unsubscribes nobody)."""
    if unsubscribe_link is None:
        unsubscribe_link = unsubscribe_url(member_id) if member_id else settings.SITE_URL
    return member_context(
        first_name=member.get("first_name") or "",
        middle_name=member.get("middle_name") or "",
        last_name=member.get("last_name") or "",
        email=member.get("email") or "",
        username=member.get("username") or "",
        subject=burst_subject,
        unsubscribe_url=unsubscribe_link,
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
    """Stable across retries, so a receiver can tell a retry from a new message; it
    carries the delivery's signed token, which a bounce or a complaint quotes back."""
    domain = sender.rsplit("@", 1)[-1].lower() or "localhost"
    return _delivery_message_id_at(domain, burst_id=burst_id, delivery_id=delivery_id)


def _delivery_message_id_at(domain: str, *, burst_id: int, delivery_id: int) -> str:
    if delivery_id < 1:  # no delivery (a test send): an id no bounce can tie to anyone
        return f"<burst{burst_id}.nodelivery@{domain}>"
    return f"<{delivery_token(delivery_id)}@{domain}>"


def fresh_message_id(*, burst_id: int, sender: str) -> str:
    """A new id for every test message: a test is a new message each time, never a
    retry of an earlier one (nor of a delivery)."""
    domain = sender.rsplit("@", 1)[-1].lower() or "localhost"
    return f"<burst{burst_id}.test.{uuid.uuid4().hex}@{domain}>"
