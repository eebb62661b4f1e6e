"""ESP webhooks under /webhooks/anymail/: Postmark, Mailgun, SendGrid, Brevo (anymail's
views) and Amazon SES through SNS (verified here), with payloads shaped as each ESP
sends them."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from campaigns import webhooks
from campaigns.engine.tokens import delivery_token
from campaigns.models import DeliveryStatus, MailEvent
from members.models import Suppression
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

SECRET = "hooks:Wq3-long-random"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"


def _auth(secret: str = SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    return settings


@pytest.fixture
def delivery():
    """A sent delivery that the relay named `relay-0001`."""
    return DeliveryFactory(
        status=DeliveryStatus.SENT,
        email="gone@example.com",
        member__email="gone@example.com",
        relay_message_id="relay-0001",
    )


def post_json(client, url: str, payload, **extra):
    return client.post(url, data=json.dumps(payload), content_type="application/json", **extra)


# --- payloads, as each ESP shapes them -------------------------------------------------------


def postmark_bounce(email="gone@example.com", *, kind="HardBounce", event_id=4242, message_id="relay-0001"):
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce" if kind == "HardBounce" else "Soft bounce",
        "MessageID": message_id,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "news@example.org",
        "BouncedAt": "2026-12-06T10:15:30.1234567Z",
        "DumpAvailable": True,
        "Inactive": kind == "HardBounce",
        "CanActivate": True,
        "Subject": "Our news",
    }


def postmark_complaint(email="gone@example.com"):
    return {
        **postmark_bounce(email, event_id=4343),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Description": "",
        "Details": "Reported as spam by the recipient",
    }


def _mailgun_signature(
    key: str = MAILGUN_KEY, token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
) -> dict:
    timestamp = "1765016130"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature}


MAILGUN_ID = "20261206101530.1.5F0B1F0B0A1C@mg.example.org"


def mailgun_failed(*, severity="permanent", code=550, message_id=MAILGUN_ID, key=MAILGUN_KEY):
    return {
        "signature": _mailgun_signature(key),
        "event-data": {
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1765016130.0,
            "log-level": "error",
            "event": "failed",
            "severity": severity,
            "reason": "bounce" if severity == "permanent" else "generic",
            "recipient": "gone@example.com",
            "recipient-domain": "example.com",
            "envelope": {
                "sender": "bounces@mg.example.org",
                "transport": "smtp",
                "targets": "gone@example.com",
            },
            "delivery-status": {
                "attempt-no": 1,
                "code": code,
                "message": f"{code} {'5.1.1' if code >= 500 else '4.2.2'} The email account does not exist",
                "description": "",
                "mx-host": "mx.example.com",
                "session-seconds": 0.4,
            },
            "message": {
                "headers": {
                    "to": "gone@example.com",
                    "message-id": message_id,
                    "from": "news@example.org",
                    "subject": "Our news",
                },
                "attachments": [],
                "size": 2210,
            },
            "flags": {
                "is-routed": False,
                "is-authenticated": True,
                "is-system-test": False,
                "is-test-mode": False,
            },
            "tags": [],
            "user-variables": {},
        },
    }


def sendgrid_events(*events: dict) -> list[dict]:
    base = {
        "email": "gone@example.com",
        "timestamp": 1765016130,
        "smtp-id": "<relay-0001>",
        "sg_message_id": "relay-0001.filter0001p3las1-1234-5F0B1F0B-1.0",
        "category": [],
    }
    return [{**base, **event} for event in events]


BREVO_ID = "202612061015.12345678901@smtp-relay.mailin.fr"


def brevo_event(event="hard_bounce", *, reason="550 5.1.1 The email account does not exist"):
    return {
        "event": event,
        "email": "gone@example.com",
        "id": 123456,
        "date": "2026-12-06 11:15:30",
        "ts": 1765016130,
        "ts_event": 1765016130,
        "ts_epoch": 1765016130123,
        "message-id": f"<{BREVO_ID}>",
        "subject": "Our news",
        "reason": reason,
        "tag": "",
        "sending_ip": "185.41.28.109",
    }


# --- basic auth and signatures ----------------------------------------------------------------

URLS = [
    "/webhooks/anymail/postmark/tracking/",
    "/webhooks/anymail/mailgun/tracking/",
    "/webhooks/anymail/sendgrid/tracking/",
    "/webhooks/anymail/brevo/tracking/",
]


@pytest.mark.parametrize("url", URLS)
def test_a_webhook_without_the_secret_is_refused_and_records_nothing(client, url, delivery):
    response = post_json(client, url, postmark_bounce())

    assert response.status_code in {400, 401}
    assert not MailEvent.objects.exists()


@pytest.mark.parametrize("url", URLS)
def test_a_webhook_with_a_wrong_secret_is_refused(client, url, delivery):
    response = post_json(client, url, postmark_bounce(), **_auth("hooks:guess"))

    assert response.status_code in {400, 401}
    assert not MailEvent.objects.exists()


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailInsecureWebhookWarning")
@pytest.mark.parametrize("url", URLS)
def test_without_a_configured_secret_every_webhook_is_refused(client, url, webhook_settings, delivery):
    webhook_settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}

    response = post_json(client, url, postmark_bounce(), **_auth())

    assert response.status_code == 400
    assert not MailEvent.objects.exists()


def test_a_mailgun_webhook_with_a_bad_signature_is_refused(client, delivery):
    response = post_json(client, URLS[1], mailgun_failed(key="key-not-ours"), **_auth())

    assert response.status_code == 400
    assert not MailEvent.objects.exists()


def test_mailgun_webhooks_are_refused_without_a_signing_key(client, webhook_settings, delivery):
    webhook_settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}

    response = post_json(client, URLS[1], mailgun_failed(), **_auth())

    assert response.status_code == 400
    assert not MailEvent.objects.exists()


def test_a_sendgrid_webhook_with_a_bad_signature_is_refused_when_a_key_is_set(
    client, webhook_settings, delivery
):
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    webhook_settings.ANYMAIL = {
        **webhook_settings.ANYMAIL,
        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": base64.b64encode(public).decode(),
    }
    body = json.dumps(sendgrid_events({"event": "bounce", "type": "bounce", "sg_event_id": "sg-1"}))
    timestamp = "1765016130"
    signed = private.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))
    headers = {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signed).decode(),
    }

    tampered = client.post(
        URLS[2], data=body.replace("bounce", "bounce "), content_type="application/json", **_auth(), **headers
    )
    genuine = client.post(URLS[2], data=body, content_type="application/json", **_auth(), **headers)

    assert tampered.status_code == 400
    assert genuine.status_code == 200
    assert MailEvent.objects.count() == 1


# --- each ESP's events ----------------------------------------------------------------------


def test_a_postmark_hard_bounce_matches_by_relay_id_and_suppresses(client, delivery):
    response = post_json(client, URLS[0], postmark_bounce(), **_auth())

    assert response.status_code == 200
    event = MailEvent.objects.get()
    assert (event.kind, event.source, event.delivery_id, event.matched_by) == (
        "hard_bounce",
        "webhook:postmark",
        delivery.pk,
        "relay_id",
    )
    assert "550 5.1.1" in event.diagnostic
    assert Suppression.objects.filter(email="gone@example.com").exists()


def test_a_replayed_postmark_event_changes_nothing(client, delivery):
    post_json(client, URLS[0], postmark_bounce(), **_auth())

    response = post_json(client, URLS[0], postmark_bounce(), **_auth())

    assert response.status_code == 200
    assert MailEvent.objects.count() == 1
    assert Suppression.objects.count() == 1


def test_a_postmark_soft_bounce_is_recorded_without_suppressing(client, delivery):
    post_json(client, URLS[0], postmark_bounce(kind="SoftBounce"), **_auth())

    assert MailEvent.objects.get().kind == "soft_bounce"
    assert not Suppression.objects.exists()


def test_a_postmark_complaint_unsubscribes_and_suppresses(client, delivery):
    post_json(client, URLS[0], postmark_complaint(), **_auth())

    assert MailEvent.objects.get().kind == "complaint"
    assert Suppression.objects.get().reason == "complaint"


def test_a_bounce_for_a_message_we_never_sent_suppresses_no_one(client, delivery):
    post_json(client, URLS[0], postmark_bounce(message_id="someone-elses-id"), **_auth())

    event = MailEvent.objects.get()
    assert (event.delivery_id, event.matched_by) == (None, "address")
    assert not Suppression.objects.exists()


def test_postmark_opens_and_deliveries_are_not_recorded(client, delivery):
    delivered = {
        "RecordType": "Delivery",
        "MessageID": "relay-0001",
        "Recipient": "gone@example.com",
        "DeliveredAt": "2026-12-06T10:15:30Z",
        "Details": "250 2.0.0 OK",
    }

    assert post_json(client, URLS[0], delivered, **_auth()).status_code == 200
    assert not MailEvent.objects.exists()


def test_a_mailgun_permanent_failure_is_a_hard_bounce(client, delivery):
    type(delivery).objects.filter(pk=delivery.pk).update(relay_message_id=MAILGUN_ID)

    response = post_json(client, URLS[1], mailgun_failed(), **_auth())

    assert response.status_code == 200
    event = MailEvent.objects.get()
    assert (event.kind, event.source, event.delivery_id) == ("hard_bounce", "webhook:mailgun", delivery.pk)


def test_a_mailgun_message_keeping_our_message_id_matches_by_its_token(client, delivery):
    payload = mailgun_failed(message_id=f"{delivery_token(delivery.pk)}@example.org")

    post_json(client, URLS[1], payload, **_auth())

    assert MailEvent.objects.get().matched_by == "token"


def test_a_mailgun_temporary_failure_is_recorded_as_delayed(client, delivery):
    post_json(client, URLS[1], mailgun_failed(severity="temporary", code=452), **_auth())

    assert MailEvent.objects.get().kind == "delayed"
    assert not Suppression.objects.exists()


def test_sendgrid_events_are_each_recorded_by_kind(client, delivery):
    payload = sendgrid_events(
        {
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 No such user",
            "sg_event_id": "sg-1",
        },
        {
            "event": "bounce",
            "type": "blocked",
            "status": "5.7.1",
            "reason": "554 5.7.1 Blocked by policy",
            "sg_event_id": "sg-2",
        },
        {"event": "deferred", "response": "421 4.7.0 Try again later", "attempt": "1", "sg_event_id": "sg-3"},
        {"event": "delivered", "response": "250 OK", "sg_event_id": "sg-4"},
    )

    response = post_json(client, URLS[2], payload, **_auth())

    assert response.status_code == 200
    assert sorted(MailEvent.objects.values_list("kind", flat=True)) == ["blocked", "delayed", "hard_bounce"]
    assert set(MailEvent.objects.values_list("source", flat=True)) == {"webhook:sendgrid"}


def test_a_sendgrid_spam_report_is_a_complaint(client, delivery):
    post_json(client, URLS[2], sendgrid_events({"event": "spamreport", "sg_event_id": "sg-9"}), **_auth())

    assert MailEvent.objects.get().kind == "complaint"
    assert Suppression.objects.get().reason == "complaint"


@pytest.mark.parametrize(
    ("brevo", "kind"),
    [
        ("hard_bounce", "hard_bounce"),
        ("soft_bounce", "soft_bounce"),
        ("spam", "complaint"),
        ("deferred", "delayed"),
    ],
)
def test_brevo_events_map_to_their_kind(client, delivery, brevo, kind):
    type(delivery).objects.filter(pk=delivery.pk).update(relay_message_id=BREVO_ID)

    response = post_json(client, URLS[3], brevo_event(brevo), **_auth())

    assert response.status_code == 200
    event = MailEvent.objects.get()
    assert (event.kind, event.source, event.delivery_id) == (kind, "webhook:brevo", delivery.pk)


def test_a_replayed_brevo_event_without_an_event_id_changes_nothing(client, delivery):
    post_json(client, URLS[3], brevo_event(), **_auth())
    post_json(client, URLS[3], brevo_event(), **_auth())

    assert MailEvent.objects.count() == 1


# --- Amazon SES through SNS -------------------------------------------------------------------


@pytest.fixture
def sns_key(webhook_settings):
    """A signing key and its certificate, served to the view under CERT_URL."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    webhook_settings.SNS_CERTIFICATES = {CERT_URL: cert.public_bytes(serialization.Encoding.PEM).decode()}
    return key


def _sns_sign(message: dict, key) -> dict:
    signed = {**message, "SignatureVersion": "2", "SigningCertURL": CERT_URL}
    canonical = webhooks._canonical(signed)
    signed["Signature"] = base64.b64encode(key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())).decode()
    return signed


def ses_notification(key, ses_event: dict, *, message_id="sns-0001") -> dict:
    return _sns_sign(
        {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
            "Subject": "Amazon SES Email Event Notification",
            "Message": json.dumps(ses_event),
            "Timestamp": "2026-12-06T10:15:31.000Z",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        },
        key,
    )


def ses_bounce(bounce_type="Permanent", status="5.1.1", *, token: str = "") -> dict:
    headers = [{"name": "Message-ID", "value": f"<{token}@example.org>"}] if token else []
    return {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": "0102017a-bounce-0001",
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "gone@example.com",
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} user unknown",
                }
            ],
            "timestamp": "2026-12-06T10:15:30.000Z",
            "reportingMTA": "dns; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-12-06T10:15:29.000Z",
            "source": "news@example.org",
            "messageId": "relay-0001",
            "destination": ["gone@example.com"],
            "headersTruncated": False,
            "headers": headers,
        },
    }


def ses_complaint() -> dict:
    return {
        "eventType": "Complaint",
        "complaint": {
            "feedbackId": "0102017a-complaint-0001",
            "complaintSubType": None,
            "complainedRecipients": [{"emailAddress": "gone@example.com"}],
            "timestamp": "2026-12-06T10:20:00.000Z",
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
            "complaintFeedbackType": "abuse",
        },
        "mail": {
            "timestamp": "2026-12-06T10:15:29.000Z",
            "messageId": "relay-0001",
            "destination": ["gone@example.com"],
        },
    }


SES_URL = "/webhooks/anymail/amazon_ses/tracking/"


def post_sns(client, message: dict, **extra):
    return post_json(
        client,
        SES_URL,
        message,
        HTTP_X_AMZ_SNS_MESSAGE_TYPE=message.get("Type", ""),
        HTTP_X_AMZ_SNS_MESSAGE_ID=message.get("MessageId", ""),
        **extra,
    )


def test_an_ses_hard_bounce_matches_by_relay_id_and_suppresses(client, sns_key, delivery):
    response = post_sns(client, ses_notification(sns_key, ses_bounce()), **_auth())

    assert response.status_code == 200
    event = MailEvent.objects.get()
    assert (event.kind, event.source, event.delivery_id, event.matched_by) == (
        "hard_bounce",
        "webhook:ses",
        delivery.pk,
        "relay_id",
    )
    assert Suppression.objects.filter(email="gone@example.com").exists()


def test_an_ses_bounce_carrying_our_message_id_matches_by_token(client, sns_key, delivery):
    post_sns(client, ses_notification(sns_key, ses_bounce(token=delivery_token(delivery.pk))), **_auth())

    assert MailEvent.objects.get().matched_by == "token"


def test_an_ses_transient_bounce_and_a_policy_block_do_not_suppress(client, sns_key, delivery):
    post_sns(
        client, ses_notification(sns_key, ses_bounce("Transient", "4.4.7"), message_id="sns-1"), **_auth()
    )
    post_sns(
        client, ses_notification(sns_key, ses_bounce("Permanent", "5.7.1"), message_id="sns-2"), **_auth()
    )

    assert sorted(MailEvent.objects.values_list("kind", flat=True)) == ["blocked", "soft_bounce"]
    assert not Suppression.objects.exists()


def test_an_ses_complaint_suppresses_the_address(client, sns_key, delivery):
    post_sns(client, ses_notification(sns_key, ses_complaint()), **_auth())

    assert MailEvent.objects.get().kind == "complaint"
    assert Suppression.objects.get().reason == "complaint"


def test_a_replayed_sns_notification_changes_nothing(client, sns_key, delivery):
    message = ses_notification(sns_key, ses_bounce())
    post_sns(client, message, **_auth())

    assert post_sns(client, message, **_auth()).status_code == 200
    assert MailEvent.objects.count() == 1


def test_sns_without_credentials_is_asked_for_them(client, sns_key, delivery):
    response = post_sns(client, ses_notification(sns_key, ses_bounce()))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not MailEvent.objects.exists()


def test_an_sns_message_with_a_forged_signature_is_refused(client, sns_key, delivery):
    message = ses_notification(sns_key, ses_bounce())
    message["Message"] = message["Message"].replace("gone@example.com", "victim@example.com")

    assert post_sns(client, message, **_auth()).status_code == 400
    assert not MailEvent.objects.exists()


def test_an_sns_message_signed_by_a_certificate_outside_amazon_is_refused(
    client, sns_key, delivery, webhook_settings
):
    forged_url = "https://attacker.example.com/sns.pem"
    webhook_settings.SNS_CERTIFICATES = {forged_url: next(iter(webhook_settings.SNS_CERTIFICATES.values()))}
    message = ses_notification(sns_key, ses_bounce())
    message["SigningCertURL"] = forged_url

    assert post_sns(client, message, **_auth()).status_code == 400
    assert not MailEvent.objects.exists()


def test_an_sns_subscription_is_confirmed_at_its_amazon_url(client, sns_key, monkeypatch):
    fetched = []
    monkeypatch.setattr(
        webhooks, "_http_get", lambda url: fetched.append(url) or b"<ConfirmSubscriptionResponse/>"
    )
    subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn&Token=abc"
    message = _sns_sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "sns-confirm",
            "Token": "abc",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": subscribe,
            "Timestamp": "2026-12-06T10:00:00.000Z",
        },
        sns_key,
    )

    assert post_sns(client, message, **_auth()).status_code == 200
    assert fetched == [subscribe]
