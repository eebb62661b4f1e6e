"""ESP webhooks: bounces and complaints reported by Postmark, Mailgun, SendGrid, Brevo
(django-anymail's tracking views) and Amazon SES (SNS, verified here: anymail does
not check SNS signatures and its SES views need boto3).

Every view requires the basic-auth secret (ANYMAIL_WEBHOOK_SECRET, "user:password")
and the ESP's own signature where it signs (Mailgun always; SendGrid when its
verification key is set; SNS always). Each event is recorded through
`services.mail_event_record` keyed on the ESP's event id: a replay records nothing.
Importing this module connects anymail's `tracking` signal (config/urls.py imports it
for `urlpatterns`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import urllib.request
import warnings
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from anymail.exceptions import (
    AnymailConfigurationError,
    AnymailNotSupportedWarning,
    AnymailWebhookValidationFailure,
)
from anymail.signals import AnymailTrackingEvent, EventType, tracking
from anymail.utils import get_request_basic_auth
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path
from django.utils.crypto import constant_time_compare
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from campaigns import services
from campaigns.bounces.parse import ParsedEvent, ParsedRecipient

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "Webhooks are off until ANYMAIL_WEBHOOK_SECRET is set."
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# The strongest first: what a ParsedEvent's `kind` names when recipients differ.
_STRENGTH = ["complaint", "hard_bounce", "soft_bounce", "blocked", "delayed"]


# --- mapping an ESP's event to a ParsedEvent ----------------------------------------------


def _status_of(text: str) -> str:
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else ""


def _kind_from_status(status: str, *, default: str) -> str:
    if status.startswith("5.7."):
        return "blocked"
    if status.startswith("5."):
        return "hard_bounce"
    if status.startswith("4."):
        return "soft_bounce"
    return default


# The ESP's own word for hard or soft, read from its raw event.
_POSTMARK_TYPES = {
    "HardBounce": "hard_bounce",
    "BadEmailAddress": "hard_bounce",
    "ManuallyDeactivated": "hard_bounce",
    "SoftBounce": "soft_bounce",
    "Transient": "soft_bounce",
    "DnsError": "soft_bounce",
    "AutoResponder": "delayed",
    "Blocked": "blocked",
    "DMARCPolicy": "blocked",
    "SpamComplaint": "complaint",
    "SpamNotification": "complaint",
}
_BREVO_EVENTS = {
    "hard_bounce": "hard_bounce",
    "invalid_email": "hard_bounce",
    "soft_bounce": "soft_bounce",
    "blocked": "blocked",
    "deferred": "delayed",
    "spam": "complaint",
    "complaint": "complaint",
}


def _bounce_kind(esp: str, event: AnymailTrackingEvent, status: str) -> str:
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    if esp == "postmark":
        # Bounce records name it in Type; subscription changes in SuppressionReason.
        postmark_type = raw.get("Type") or raw.get("SuppressionReason") or ""
        return _POSTMARK_TYPES.get(postmark_type, _kind_from_status(status, default="soft_bounce"))
    if esp == "mailgun":
        severity = (raw.get("event-data") or {}).get("severity", "")
        if severity == "permanent":
            return "blocked" if status.startswith("5.7.") else "hard_bounce"
        return "soft_bounce"
    if esp == "sendgrid":
        if raw.get("type") == "blocked":
            return "blocked"
        return _kind_from_status(status, default="hard_bounce")
    if esp == "brevo":
        return _BREVO_EVENTS.get(raw.get("event", ""), _kind_from_status(status, default="soft_bounce"))
    return _kind_from_status(status, default="soft_bounce")


def _kind(esp: str, event: AnymailTrackingEvent, status: str) -> str | None:
    if event.event_type == EventType.COMPLAINED:
        return "complaint"
    if event.event_type == EventType.DEFERRED:
        return "delayed"
    if event.event_type == EventType.BOUNCED:
        return _bounce_kind(esp, event, status)
    if event.event_type == EventType.REJECTED:
        # The ESP refused to send: for an address it already knows bounces, that is a
        # hard bounce; for its policy (a block list, spam content), only recorded.
        if event.reject_reason in {"bounced", "invalid"}:
            return "hard_bounce"
        return "blocked"
    return None  # delivered, opened, clicked...: not ours to record


def _message_ids(message_id: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(delivery token candidates, relay ids) from the ESP's message id. An ESP that
    relays our message keeps our Message-ID, whose local part is the token; the
    service verifies tokens, so a candidate that is none matches nothing."""
    bare = (message_id or "").strip().strip("<>").strip()
    if not bare:
        return (), ()
    local = bare.split("@", 1)[0] if "@" in bare else ""
    return ((local,) if local else ()), (bare,)


def parsed_from_anymail(esp: str, event: AnymailTrackingEvent) -> ParsedEvent | None:
    """The event in the parser's terms, or None when it is no bounce or complaint."""
    diagnostic = " ".join(part for part in (event.mta_response, event.description) if part).strip()
    status = _status_of(diagnostic)
    kind = _kind(esp, event, status)
    if kind is None or not event.recipient:
        return None
    recipient = ParsedRecipient(
        email=event.recipient.strip().lower(), kind=kind, status=status, diagnostic=diagnostic[:1000]
    )
    tokens, relay_ids = _message_ids(event.message_id)
    return ParsedEvent(
        kind=kind,
        recipients=(recipient,),
        delivery_tokens=tokens,
        relay_ids=relay_ids,
        occurred_at=event.timestamp,
    )


def _raw_payload(payload: Any) -> str:
    try:
        return json.dumps(payload, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(payload)


def _dedup_key(esp: str, event_id: str | None, raw: str, recipient: str) -> str:
    if event_id:
        return f"{esp}:{event_id}"[:200]
    # Brevo sends no event id: the payload itself is the identity of a replay.
    return f"{esp}:sha256:{hashlib.sha256(f'{raw}|{recipient}'.encode()).hexdigest()}"


def _esp_key(esp_name: str) -> str:
    return {"Amazon SES": "ses"}.get(esp_name, esp_name.lower().replace(" ", ""))


def on_tracking(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    esp = _esp_key(esp_name)
    parsed = parsed_from_anymail(esp, event)
    if parsed is None:
        return
    raw = _raw_payload(event.esp_event)
    services.mail_event_record(
        parsed=parsed,
        source=f"webhook:{esp}",
        raw=raw,
        dedup_key=_dedup_key(esp, event.event_id, raw, parsed.recipients[0].email),
    )


tracking.connect(on_tracking, dispatch_uid="campaigns.webhooks.on_tracking")


# --- anymail's views, refusing to run without the secret ------------------------------------


class _SecretRequired:
    """anymail only warns when WEBHOOK_SECRET is missing; here the webhooks refuse."""

    def validate_request(self, request: HttpRequest) -> None:
        if not self.basic_auth:
            raise AnymailWebhookValidationFailure(NOT_CONFIGURED)


class PostmarkTracking(_SecretRequired, PostmarkTrackingWebhookView):
    pass


class SendGridTracking(_SecretRequired, SendGridTrackingWebhookView):
    def __init__(self, **kwargs: Any) -> None:
        # anymail 15 warns on every request that it no longer tests SendGrid; the
        # tracking webhook's format has not changed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnymailNotSupportedWarning)
            super().__init__(**kwargs)


class BrevoTracking(_SecretRequired, BrevoTrackingWebhookView):
    pass


class MailgunTracking(_SecretRequired, MailgunTrackingWebhookView):
    """Mailgun signs every webhook: without MAILGUN_WEBHOOK_SIGNING_KEY it is refused
    (400) instead of anymail's configuration error (500)."""

    def __init__(self, **kwargs: Any) -> None:
        try:
            super().__init__(**kwargs)
        except AnymailConfigurationError:
            self.webhook_signing_key = None
            self.basic_auth = []
            self.validators = [type(self)._unsigned]

    def _unsigned(self, request: HttpRequest) -> None:
        raise AnymailWebhookValidationFailure("Mailgun webhooks need MAILGUN_WEBHOOK_SIGNING_KEY.")


# --- Amazon SES through SNS ----------------------------------------------------------------

_SNS_CERT_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SNS_FETCH_TIMEOUT = 10


class SnsInvalid(Exception):
    pass


def _allowed_cert_url(url: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and bool(_SNS_CERT_HOST.match(parts.hostname or ""))
        and parts.path.endswith(".pem")
    )


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=SNS_FETCH_TIMEOUT) as response:  # noqa: S310 (https, allowlisted)
        return response.read(100_000)


@functools.lru_cache(maxsize=16)
def _fetched_certificate(url: str) -> bytes:
    return _http_get(url)


def _certificate(url: str) -> x509.Certificate:
    # Tests (and an air-gapped site) give the certificates by URL in SNS_CERTIFICATES.
    injected = getattr(settings, "SNS_CERTIFICATES", {}) or {}
    pem = injected[url].encode() if url in injected else _fetched_certificate(url)
    return x509.load_pem_x509_certificate(pem)


def _canonical(message: dict) -> bytes:
    fields = _SNS_SIGNED_FIELDS.get(message.get("Type", ""))
    if fields is None:
        raise SnsInvalid("unknown SNS message type")
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
    return "".join(lines).encode()


def sns_verify(message: dict) -> None:
    """Raise SnsInvalid unless `message` is signed by Amazon SNS."""
    url = message.get("SigningCertURL", "")
    if not _allowed_cert_url(url):
        raise SnsInvalid("SigningCertURL is not an Amazon SNS certificate")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise SnsInvalid("unknown SignatureVersion")
    try:
        signature = base64.b64decode(message.get("Signature", ""), validate=True)
        _certificate(url).public_key().verify(signature, _canonical(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError, KeyError, OSError) as exc:
        raise SnsInvalid(f"bad SNS signature ({type(exc).__name__})") from None


def _ses_occurred(event: dict, section: dict) -> datetime | None:
    value = section.get("timestamp") or (event.get("mail") or {}).get("timestamp")
    return parse_datetime(value) if isinstance(value, str) else None


def _ses_header_message_id(mail: dict) -> str:
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() == "message-id":
            return str(header.get("value", ""))
    return ""


def _ses_recipients(event: dict) -> tuple[str, list[ParsedRecipient]] | None:
    kind_name = event.get("eventType") or event.get("notificationType") or ""
    if kind_name == "Bounce":
        bounce = event.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        recipients = []
        for item in bounce.get("bouncedRecipients") or []:
            diagnostic = str(item.get("diagnosticCode") or "")
            status = str(item.get("status") or "") or _status_of(diagnostic)
            if permanent:
                kind = "blocked" if status.startswith("5.7.") else "hard_bounce"
            else:
                kind = "soft_bounce"
            recipients.append(
                ParsedRecipient(str(item.get("emailAddress", "")).lower(), kind, status, diagnostic)
            )
        return "bounce", recipients
    if kind_name == "Complaint":
        complaint = event.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "")
        recipients = [
            ParsedRecipient(str(item.get("emailAddress", "")).lower(), "complaint", "", feedback)
            for item in complaint.get("complainedRecipients") or []
        ]
        return "complaint", recipients
    if kind_name == "DeliveryDelay":
        delay = event.get("deliveryDelay") or {}
        recipients = [
            ParsedRecipient(
                str(item.get("emailAddress", "")).lower(),
                "delayed",
                str(item.get("status") or ""),
                str(item.get("diagnosticCode") or delay.get("delayType") or ""),
            )
            for item in delay.get("delayedRecipients") or []
        ]
        return "deliveryDelay", recipients
    return None


def parsed_from_ses(event: dict) -> ParsedEvent | None:
    found = _ses_recipients(event)
    if not found:
        return None
    section_name, recipients = found
    recipients = [r for r in recipients if r.email]
    if not recipients:
        return None
    mail = event.get("mail") or {}
    tokens, _ = _message_ids(_ses_header_message_id(mail))
    relay_id = str(mail.get("messageId") or "").strip("<>")
    kinds = {r.kind for r in recipients}
    return ParsedEvent(
        kind=next(kind for kind in _STRENGTH if kind in kinds),
        recipients=tuple(recipients),
        delivery_tokens=tokens,
        relay_ids=(relay_id,) if relay_id else (),
        occurred_at=_ses_occurred(event, event.get(section_name) or {}),
    )


def _basic_auth_ok(request: HttpRequest) -> bool:
    secret = (getattr(settings, "ANYMAIL", {}) or {}).get("WEBHOOK_SECRET")
    allowed = [secret] if isinstance(secret, str) else list(secret or [])
    given = get_request_basic_auth(request) or ""
    return any(constant_time_compare(given, item) for item in allowed if item)


@method_decorator(csrf_exempt, name="dispatch")
class SesTracking(View):
    """Amazon SES notifications (bounce, complaint, delivery delay) through an SNS
    HTTPS subscription, its signature checked against Amazon's certificate."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        if not (getattr(settings, "ANYMAIL", {}) or {}).get("WEBHOOK_SECRET"):
            return HttpResponseBadRequest(NOT_CONFIGURED)
        if not _basic_auth_ok(request):
            # SNS sends the credentials only after a 401 that asks for them.
            response = HttpResponse("Unauthorized", status=401)
            response["WWW-Authenticate"] = 'Basic realm="Emailer webhooks"'
            return response
        try:
            message = json.loads(request.body)
            if not isinstance(message, dict):
                raise SnsInvalid("not an SNS message")
            if request.headers.get("x-amz-sns-message-type", message.get("Type")) != message.get("Type"):
                raise SnsInvalid("the message type header and body differ")
            sns_verify(message)
        except (ValueError, SnsInvalid) as exc:
            return HttpResponseBadRequest(f"Not a valid SNS message: {exc}")
        if message["Type"] == "SubscriptionConfirmation":
            return self._confirm(message)
        if message["Type"] == "Notification":
            self._record(message)
        return HttpResponse()

    def _confirm(self, message: dict) -> HttpResponse:
        url = str(message.get("SubscribeURL", ""))
        parts = urlsplit(url)
        if parts.scheme != "https" or not _SNS_CERT_HOST.match(parts.hostname or ""):
            return HttpResponseBadRequest("SubscribeURL is not Amazon SNS")
        _http_get(url)
        logger.info("Amazon SNS subscription confirmed for topic %s", message.get("TopicArn"))
        return HttpResponse()

    def _record(self, message: dict) -> None:
        try:
            event = json.loads(message.get("Message", ""))
        except ValueError:
            return
        parsed = parsed_from_ses(event) if isinstance(event, dict) else None
        if parsed is None:
            return
        services.mail_event_record(
            parsed=parsed,
            source="webhook:ses",
            raw=_raw_payload(event),
            dedup_key=f"ses:{message['MessageId']}",
        )


# Mounted under /webhooks/anymail/ by config/urls.py, at anymail's own paths.
app_name = "webhooks"
urlpatterns = [
    path("amazon_ses/tracking/", SesTracking.as_view(), name="amazon_ses_tracking"),
    path("brevo/tracking/", BrevoTracking.as_view(), name="brevo_tracking"),
    path("mailgun/tracking/", MailgunTracking.as_view(), name="mailgun_tracking"),
    path("postmark/tracking/", PostmarkTracking.as_view(), name="postmark_tracking"),
    path("sendgrid/tracking/", SendGridTracking.as_view(), name="sendgrid_tracking"),
]
