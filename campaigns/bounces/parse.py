"""Reading a bounce or a complaint: who failed or complained, how, and which of our
messages it was about. Pure: no database, and `parse_message` never raises.

- RFC 3464 DSNs (`multipart/report; report-type=delivery-status`): the
  per-recipient fields (`Original-Recipient`/`Final-Recipient`, `Action`,
  `Status`, `Diagnostic-Code`).
- RFC 5965 ARF complaints (`report-type=feedback-report`, `Feedback-Type: abuse`).
- Non-standard bounces (Postfix without a DSN part, Exim, qmail, Exchange, old
  Gmail, Yahoo): flufl.bounce finds the failed addresses; the kind is decided here,
  from the reply text next to each address (flufl.bounce decides permanence from
  `Action:` alone, which calls a full mailbox permanent).

Our messages are found again by the signed delivery token in their Message-ID
(`campaigns.engine.tokens`), quoted back in the returned message or headers; the
relay's own id (its queue id, or the Message-ID it gave the message) as a second
clue. Tokens are only *found* here: whoever matches them verifies them.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from flufl.bounce import all_failures

from campaigns.engine.tokens import DELIVERY_TOKEN_PATTERN

logger = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024 * 1024  # what is read of a message: a DSN's report comes first
MAX_PARTS = 200
MAX_DEPTH = 6
MAX_TEXT = 100_000  # characters of notification text searched
MAX_IDS = 20

HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCE = "soft_bounce"
BLOCKED = "blocked"
DELAYED = "delayed"
COMPLAINT = "complaint"
UNPARSED = "unparsed"
# Strongest first: what an event with several recipients is called.
KINDS_BY_STRENGTH = (COMPLAINT, HARD_BOUNCE, SOFT_BOUNCE, BLOCKED, DELAYED)


@dataclass(frozen=True)
class ParsedRecipient:
    email: str  # the failed or complaining address, lower-cased ("" when a complaint hides it)
    kind: str  # "hard_bounce" | "soft_bounce" | "blocked" | "delayed" | "complaint"
    status: str = ""  # enhanced code "5.1.1", when known
    diagnostic: str = ""  # "550 5.1.1 User unknown", when known


@dataclass(frozen=True)
class ParsedEvent:
    kind: str  # the strongest kind among the recipients, or "unparsed"
    recipients: tuple[ParsedRecipient, ...]
    delivery_tokens: tuple[str, ...]  # signed delivery tokens found in Message-IDs (not yet verified)
    relay_ids: tuple[str, ...]  # relay message ids found (no angle brackets)
    occurred_at: datetime | None
    subject: str = ""


NOTHING = ParsedEvent(kind=UNPARSED, recipients=(), delivery_tokens=(), relay_ids=(), occurred_at=None)


def parse_message(raw: bytes) -> ParsedEvent:
    """What a bounce or complaint says; junk, auto-replies and anything unreadable
    give kind "unparsed" (with whatever tokens could still be found)."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        return _parse(bytes(raw[:MAX_BYTES]))
    except Exception:  # a malformed message must never stop an intake
        logger.warning("bounce parser: message not readable", exc_info=True)
        return NOTHING


# --- the kind of a failure ----------------------------------------------------------------------

ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC_REPLY = re.compile(r"(?<![\d.#])([45]\d\d)(?=[\s:\-]|$)")
POLICY_WORDS = re.compile(
    r"\b(blocked|block ?list(ed)?|black ?list(ed)?|deny ?list(ed)?|spam\w*|spamhaus|polic(y|ies)|"
    r"rejected due to|reputation|banned)\b",
    re.IGNORECASE,
)
FULL_WORDS = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|exceeded (its |the )?(storage|quota)|"
    r"insufficient (storage|disk)|out of storage|mailbox has exceeded",
    re.IGNORECASE,
)
UNKNOWN_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address|person)|"
    r"mailbox (unavailable|not found|does not exist|disabled)|does not exist|doesn't exist|"
    r"recipient not found|address not found|invalid (recipient|mailbox|address)|unrouteable|"
    r"doesn't have an? [\w.]* ?account|no mailbox here|account (has been )?disabled|"
    r"address couldn't be found|not a valid (recipient|mailbox)",
    re.IGNORECASE,
)


def failure_kind(*, action: str, status: str, diagnostic: str) -> tuple[str, str]:
    """(kind, enhanced status) of one recipient's failure, in this order:
    `Action: delayed` is delayed; x.7.x is blocked (policy); 5.1.x and 5.2.1 (no such
    address) are hard; a full mailbox (x.2.2, "over quota") is soft; policy words
    ("blocked", "spam", ...) are blocked; any other 4.x.x is soft, even when the
    server gave up (`Action: failed`); any other 5.x.x is hard. Without an enhanced
    code: the words (full mailbox soft, policy blocked), 4xx and 552 soft, other 5xx
    hard, "user unknown" and the like hard; a failure nothing explains ("try again
    later", or no reason at all) counts as soft: it suppresses only when repeated."""
    if action.strip().lower().startswith("delayed"):
        return DELAYED, _enhanced(status, diagnostic)
    code = _enhanced(status, diagnostic)
    text = diagnostic
    if code.startswith("2"):  # "success" on a failure: a broken report, read the words
        code = ""
    if code:
        klass, subject, detail = code.split(".")
        if subject == "7":
            return BLOCKED, code
        if klass == "5" and (subject == "1" or (subject, detail) == ("2", "1")):
            return HARD_BOUNCE, code
        if (subject, detail) == ("2", "2") or FULL_WORDS.search(text):
            return SOFT_BOUNCE, code
        if POLICY_WORDS.search(text):
            return BLOCKED, code
        return (SOFT_BOUNCE if klass == "4" else HARD_BOUNCE), code
    if FULL_WORDS.search(text):
        return SOFT_BOUNCE, ""
    if POLICY_WORDS.search(text):
        return BLOCKED, ""
    basic = BASIC_REPLY.search(text)
    if basic:
        reply = basic.group(1)
        return (SOFT_BOUNCE if reply[0] == "4" or reply == "552" else HARD_BOUNCE), ""
    if UNKNOWN_WORDS.search(text):
        return HARD_BOUNCE, ""
    return SOFT_BOUNCE, ""


def _enhanced(status: str, diagnostic: str) -> str:
    """The enhanced code: the Status field's, unless it is a bare x.0.0 and the
    server's reply is more precise."""
    own = ENHANCED.search(status or "")
    said = ENHANCED.search(diagnostic or "")
    if own and not (said and own.group(2) == own.group(3) == "0" and own.group(1) == said.group(1)):
        return ".".join(own.groups())
    if said:
        return ".".join(said.groups())
    qmail = re.search(r"\(#([245]\.\d{1,3}\.\d{1,3})\)", diagnostic or "")
    return qmail.group(1) if qmail else ""


# --- the message --------------------------------------------------------------------------------

TOKEN_IN_ID = re.compile(rf"^\s*<?\s*({DELIVERY_TOKEN_PATTERN})@", re.IGNORECASE)
TOKEN_IN_TEXT = re.compile(rf"<({DELIVERY_TOKEN_PATTERN})@", re.IGNORECASE)
MESSAGE_ID = re.compile(r"<([^<>\s@]{1,250}@[^<>\s]{1,250})>")
REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status")
FEEDBACK_TYPES = ("message/feedback-report",)
RETURNED_TYPES = ("message/rfc822", "message/global")
RETURNED_HEADER_TYPES = ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers")
COMPLAINT_FEEDBACK = ("abuse", "fraud")
BOUNCE_SENDERS = re.compile(r"^(mailer-?daemon|postmaster|mail-?daemon|mdaemon|bounce[sd]?)@", re.IGNORECASE)
BOUNCE_SUBJECTS = re.compile(
    r"undeliver|delivery status notification|delivery (has )?fail|returned mail|failure notice|"
    r"mail delivery (failed|subsystem|system)|could not be delivered|non[- ]?deliver|"
    r"delivery notification|mail system error|delivery problem",
    re.IGNORECASE,
)
AUTOREPLY_SUBJECTS = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|"
    r"abwesenheit|absence|vacation|away from|on leave|r[ée]ponse automatique)",
    re.IGNORECASE,
)
# Where a non-standard bounce starts its copy of the original message.
COPY_MARKERS = re.compile(
    r"(?im)^.*(copy of the (original )?message|original message (follows|headers)|"
    r"below this line is a copy|-+ ?original message ?-+|returned message|"
    r"message headers follow|headers of the original).*$"
)
HEADER_LINE = re.compile(
    r"(?m)^(Return-Path|Received|Message-ID|From|To|Subject|Date|DKIM-Signature|MIME-Version|X-[\w-]+):"
)
SES_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-[0-9a-f]{6}")
REDACTED = re.compile(r"^(x+|redacted|\*+|[#x*]+)$", re.IGNORECASE)


@dataclass
class _Found:
    """What the walk over the message's parts collected."""

    status_blocks: list[Message]
    feedback: list[Message]
    returned: list[Message]
    texts: list[str]


def _parse(raw: bytes) -> ParsedEvent:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    found = _Found([], [], [], [])
    _walk(msg, found, depth=0, budget=[MAX_PARTS])
    notification = "\n".join(found.texts)[:MAX_TEXT]
    if not found.returned:
        inline = _inline_copy(notification)
        if inline is not None:
            found.returned.append(inline)
    subject = _header(msg, "subject")[:500]
    recipients, per_message = _from_reports(found)
    if recipients is None and not found.feedback and _looks_like_bounce(msg, subject):
        # Not a report, but from a mail system: a bounce in the server's own words. An
        # auto-reply or a person's answer (which may quote our Message-ID) is never
        # read as one, whatever words it contains.
        recipients = _heuristic(msg, notification, found.returned)
    tokens, relay_ids = _correlation(msg, found, notification)
    recipients = _unique(recipients or [])
    kind = _strongest(r.kind for r in recipients)
    return ParsedEvent(
        kind=kind,
        recipients=tuple(recipients),
        delivery_tokens=tuple(tokens),
        relay_ids=tuple(relay_ids),
        occurred_at=_occurred_at(msg, per_message, found.status_blocks + found.feedback),
        subject=subject,
    )


def _walk(part: Message, found: _Found, *, depth: int, budget: list[int]) -> None:
    """Collect the report parts, the returned messages and the notification text,
    without descending into a returned message (its text is not ours to read)."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        return
    ctype = part.get_content_type()
    if ctype in REPORT_TYPES:
        found.status_blocks.extend(_blocks(part))
    elif ctype in FEEDBACK_TYPES:
        found.feedback.extend(_blocks(part))
    elif ctype in RETURNED_TYPES:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found.returned.append(payload[0])
        elif isinstance(payload, str):
            found.returned.append(_headers_of(_decoded(part)))
    elif ctype in RETURNED_HEADER_TYPES:
        found.returned.append(_headers_of(_decoded(part)))
    elif part.is_multipart():
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                _walk(sub, found, depth=depth + 1, budget=budget)
    elif (
        ctype in ("text/plain", "text/html")
        and part.get("content-disposition", "").lower()[:10] != "attachment"
    ):
        text = _decoded(part)
        if ctype == "text/html":
            text = _html_text(text)
        found.texts.append(text)


def _decoded(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", "replace")


def _html_text(html: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d)>", "\n", text)
    text = re.sub(r"<[^>]+>", " ", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", " ").replace("&amp;", "&")


def _headers_of(text: str) -> Message:
    return HeaderParser(policy=email.policy.compat32).parsestr(text.lstrip("\r\n"), headersonly=True)


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a report part, whichever way the parser left them."""
    payload = part.get_payload()
    blocks: list[Message] = []
    if isinstance(payload, list):
        for block in payload:
            if not isinstance(block, Message):
                continue
            blocks.append(block)
            rest = block.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks.extend(_text_blocks(rest))
    elif isinstance(payload, str):
        blocks.extend(_text_blocks(_decoded(part)))
    return blocks


def _text_blocks(text: str) -> list[Message]:
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [_headers_of(chunk) for chunk in chunks if chunk.strip()]


def _header(msg: Message, name: str) -> str:
    """A header as readable text: RFC 2047 words decoded, stray 8-bit bytes replaced."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:  # a broken encoded word: keep it as written
        text = str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


def _all(msg: Message, name: str) -> list[str]:
    return [" ".join(str(v).split()) for v in msg.get_all(name) or []]


# --- DSN and ARF reports --------------------------------------------------------------------------


def _from_reports(found: _Found) -> tuple[list[ParsedRecipient] | None, Message | None]:
    """Recipients of the DSN blocks (None when there is no per-recipient block) or
    of the ARF report, and the DSN's per-message block."""
    per_message = None
    recipients: list[ParsedRecipient] | None = None
    for block in found.status_blocks:
        if not (block.get("final-recipient") or block.get("original-recipient")):
            if per_message is None and (block.get("reporting-mta") or block.get("x-postfix-queue-id")):
                per_message = block
            continue
        recipients = recipients if recipients is not None else []
        recipient = _dsn_recipient(block)
        if recipient is not None:
            recipients.append(recipient)
    if found.feedback and _feedback_type(found.feedback) in COMPLAINT_FEEDBACK:
        # A reporter that hides the address (redacted) still quotes the Message-ID:
        # the complaint is kept with no address, and its delivery token names it.
        addresses = _complainants(found) or [""]
        recipients = (recipients or []) + [ParsedRecipient(email=a, kind=COMPLAINT) for a in addresses]
    return recipients, per_message


def _dsn_recipient(block: Message) -> ParsedRecipient | None:
    action = _header(block, "action").lower()
    if action.startswith(("delivered", "relayed", "expanded")):
        return None  # not a failure
    address = _typed_address(_header(block, "original-recipient")) or _typed_address(
        _header(block, "final-recipient")
    )
    if not address:
        return None
    diagnostic = _header(block, "diagnostic-code")
    diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic[:20] else diagnostic
    status = _header(block, "status")
    kind, code = failure_kind(action=action or "failed", status=status, diagnostic=diagnostic)
    return ParsedRecipient(email=address, kind=kind, status=code, diagnostic=diagnostic[:1000])


def _typed_address(value: str) -> str:
    """`rfc822; Bob@Example.com` -> bob@example.com ('' for another address type)."""
    kind, sep, address = value.partition(";")
    if not sep:
        address = value
    elif kind.strip().lower() not in ("rfc822", "utf-8"):
        return ""
    return _clean_address(address)


def _clean_address(value: str) -> str:
    value = value.strip().strip("<>").strip().strip("\"'").lower()
    if value.count("@") != 1 or any(c.isspace() for c in value) or len(value) > 254:
        return ""
    local, domain = value.split("@")
    if not local or "." not in domain or REDACTED.match(local):
        return ""
    return value


def _feedback_type(blocks: list[Message]) -> str:
    for block in blocks:
        value = _header(block, "feedback-type").lower()
        if value:
            return value
    return ""


def _complainants(found: _Found) -> list[str]:
    """The complaining address: the report's Original-Rcpt-To, else what the
    returned message says it was sent to (Microsoft keeps it in its own header)."""
    addresses = [_clean_address(v) for block in found.feedback for v in _all(block, "original-rcpt-to")]
    if not any(addresses):
        for returned in found.returned:
            addresses += [_clean_address(v) for v in _all(returned, "x-hmxmroriginalrecipient")]
            if not any(addresses):
                addresses += [_clean_address(a) for _, a in getaddresses(_all(returned, "to"))]
    return [a for a in addresses if a]


# --- non-standard bounces ---------------------------------------------------------------------------


def _looks_like_bounce(msg: Message, subject: str) -> bool:
    """Sent by a mail system about a delivery. Not a null Return-Path alone: auto-replies
    use one too (RFC 3834), and they are no bounce."""
    sender = (getaddresses(_all(msg, "from")) or [("", "")])[0][1]
    if AUTOREPLY_SUBJECTS.search(subject) or msg.get("x-autoreply") or msg.get("x-autorespond"):
        return False
    return bool(
        BOUNCE_SENDERS.match(sender) or BOUNCE_SUBJECTS.search(subject) or msg.get("x-failed-recipients")
    )


def _heuristic(msg: Message, notification: str, returned: list[Message]) -> list[ParsedRecipient]:
    """Addresses from flufl.bounce (or else the returned message's To, when the
    notification names it), each with the reply text that follows it."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector that chokes on this message
        logger.info("flufl.bounce could not read a message", exc_info=True)
        temporary, permanent = frozenset(), frozenset()
    found = [(_clean_address(a.decode("ascii", "replace")), True) for a in sorted(permanent)]
    found += [(_clean_address(a.decode("ascii", "replace")), False) for a in sorted(temporary)]
    if not any(address for address, _ in found):
        found = [(address, True) for address in _returned_to(returned, notification)]
    body = _before_copy(notification)
    recipients = []
    for address, permanent_failure in found:
        if not address:
            continue
        diagnostic = _reply_near(body, address)
        kind, code = failure_kind(
            action="failed" if permanent_failure else "delayed", status="", diagnostic=diagnostic
        )
        recipients.append(ParsedRecipient(email=address, kind=kind, status=code, diagnostic=diagnostic))
    return recipients


def _returned_to(returned: list[Message], notification: str) -> list[str]:
    """The original's recipient, when the notification names it too."""
    text = notification.lower()
    out = []
    for message in returned:
        for _, address in getaddresses(_all(message, "to")):
            address = _clean_address(address)
            if address and address in text:
                out.append(address)
    return out


def _before_copy(text: str) -> str:
    marker = COPY_MARKERS.search(text)
    return text[: marker.start()] if marker else text


REMOTE_SAID = re.compile(
    r"(?:remote server returned|said|response from the remote server was|error from remote mail server|"
    r"other server returned was)"
    r"[^:'\n]*[:']?\s*'?(?P<reply>[^'\n]{3,400})",
    re.IGNORECASE,
)
REPLY_LINE = re.compile(r"(?P<reply>(?<![\d.])[45]\d\d(?:[ \-:]+[245]\.\d{1,3}\.\d{1,3})?[ \-:][^\n]{2,400})")


def _reply_near(text: str, address: str) -> str:
    """The server's reply for `address`: in a paragraph that names it (Exchange names
    it twice, the reply under the second), else the first reply the notification
    quotes; on one line."""
    lower = text.lower()
    candidates = []
    start = lower.find(address)
    while start != -1 and len(candidates) < 5:
        paragraph = text[start : start + 800]
        end = re.search(r"\S[^\n]*\n[ \t]*\n", paragraph)  # the first blank line after some text
        candidates.append(" ".join(paragraph[: end.end() if end else 800].split()))
        start = lower.find(address, start + len(address))
    candidates.append(" ".join(text.split())[:5000])
    for candidate in candidates:
        said = REMOTE_SAID.search(candidate)
        for where in ([said.group("reply")] if said else []) + [candidate]:
            match = REPLY_LINE.search(where)  # the reply itself, not what introduces it
            if match:
                return _one_reply(match.group("reply"))
    for candidate in candidates:
        if ENHANCED.search(candidate) or UNKNOWN_WORDS.search(candidate) or FULL_WORDS.search(candidate):
            return candidate[:300]
    return ""


def _one_reply(reply: str) -> str:
    reply = re.sub(r"\s*\(in reply to [^)]*\)?.*$", "", reply, flags=re.IGNORECASE)
    reply = re.sub(r"(?<=\d) ?(\d{3})[- ](?=\d\.\d)", " ", reply)  # "550-5.1.1 ... 550-5.1.1" continuations
    return " ".join(reply.strip(" '\"").split())[:300]


def _inline_copy(text: str) -> Message | None:
    """The headers of an original message quoted as text after the notification."""
    marker = COPY_MARKERS.search(text)
    if not marker:
        return None
    start = HEADER_LINE.search(text, marker.end())
    if not start:
        return None
    return _headers_of(text[start.start() : start.start() + 64_000])


# --- correlation ------------------------------------------------------------------------------------


def _correlation(msg: Message, found: _Found, notification: str) -> tuple[list[str], list[str]]:
    tokens: list[str] = []
    relay_ids: list[str] = []
    for returned in found.returned:
        for name in ("message-id", "references", "in-reply-to"):
            for value in _all(returned, name):
                for message_id in MESSAGE_ID.findall(value) or [value.strip("<> ")]:
                    token = TOKEN_IN_ID.match(message_id)
                    if token:
                        tokens.append(token.group(1).lower())
                    elif name == "message-id" and "@" in message_id:
                        relay_ids += _relay_forms(message_id)
    for name in ("in-reply-to", "references"):  # some reporters thread the report on the original
        for value in _all(msg, name):
            tokens += [t.lower() for t in TOKEN_IN_TEXT.findall(value)]
    tokens += [t.lower() for t in TOKEN_IN_TEXT.findall(notification)]
    return _first(tokens), _first(relay_ids)


def _relay_forms(message_id: str) -> list[str]:
    """A relay that gives the message its own Message-ID answers DATA with it, whole
    (`250 Ok <id@host>`) or only its left part (SES: `250 Ok 0100018c...`).

    Relay ids are not signed, so only ids nobody can guess are taken: a whole
    Message-ID, or SES's random left part; never a queue id from Received or
    X-Postfix-Queue-ID (short, partly time-based), which a forged bounce could
    name to touch someone else's delivery."""
    forms = [message_id]
    local, _, domain = message_id.partition("@")
    if domain.lower().endswith("amazonses.com") and SES_ID.fullmatch(local.lower()):
        forms.append(local)
    return forms


def _first(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        value = value.strip()
        if value and value not in out and len(value) <= 255:
            out.append(value)
        if len(out) >= MAX_IDS:
            break
    return out


def _unique(recipients: list[ParsedRecipient]) -> list[ParsedRecipient]:
    """One entry per address, its strongest."""
    best: dict[str, ParsedRecipient] = {}
    for recipient in recipients:
        current = best.get(recipient.email)
        if current is None or _rank(recipient.kind) < _rank(current.kind):
            best[recipient.email] = recipient
    return list(best.values())


def _rank(kind: str) -> int:
    return KINDS_BY_STRENGTH.index(kind) if kind in KINDS_BY_STRENGTH else len(KINDS_BY_STRENGTH)


def _strongest(kinds: Iterator[str] | Iterable[str]) -> str:
    ranked = sorted(kinds, key=_rank)
    return ranked[0] if ranked else UNPARSED


def _occurred_at(msg: Message, per_message: Message | None, blocks: list[Message]) -> datetime | None:
    candidates = [_header(msg, "date")]
    candidates += [_header(b, "last-attempt-date") for b in blocks]
    candidates += [_header(b, "arrival-date") for b in [per_message, *blocks] if b is not None]
    for value in candidates:
        if not value:
            continue
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if 1990 <= moment.year <= 2100:
            return moment
    return None
