"""One SMTP connection reused for many messages, and the connection check.

Failures become `Outcome`s; a failure that concerns every message of the burst
(authentication refused, sender refused) is a `BurstFault`."""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass

from django.conf import settings

from campaigns.engine.classify import Outcome, classify, connection_failure, reply_text, sent
from campaigns.models import DeliveryStatus

DOT_LINE = re.compile(rb"(?m)^\.")


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
                        f"SMTP authentication failed: {exc.smtp_code} {reply_text(exc.smtp_error)}"
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
                raise BurstFault(f"Sender {sender} refused: {mail[0]} {reply_text(mail[1])}")
            return self._failed(classify(mail[0], mail[1], stage="mail"))
        if rcpt[0] not in (250, 251):
            return self._failed(classify(rcpt[0], rcpt[1], stage="rcpt"))
        if data[0] != 354:
            return self._failed(classify(data[0], data[1], stage="data"))
        # Dot-stuffing; the search first, as most messages have no line to stuff.
        stuffed = DOT_LINE.sub(b"..", message) if message.startswith(b".") or b"\n." in message else message
        payload = stuffed + b".\r\n"
        if pipelining and then:
            payload += self._envelope(sender, then, rset=False)
        conn.send(payload)
        if pipelining and then:
            self.announced = (sender, then)
        code, reply = conn.getreply()
        self.needs_rset = False
        if code != 250:
            return self._failed(classify(code, reply, stage="data"))
        return sent(reply)

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
