"""What receivers see: the messages the engine builds, as a real SMTP server got them
(issue 3 point 7).

Every message is parsed back with Python's `email` package (policy=default) and
must carry no MIME defect; a realistic burst is also run through SpamAssassin.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import shutil
import subprocess
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from django.utils.html import escape

from campaigns import services
from campaigns.engine import mime, smtp, tokens
from campaigns.models import Delivery, DeliveryStatus, EmailBurst
from devtools.smtp_sink import ReceivedMessage
from tests.campaigns.bursts import drive
from tests.factories import AttachmentFactory, DeliveryFactory, DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "") == "1"
SPAMASSASSIN = "/usr/bin/spamassassin"
SPAM_LIMIT = 0.5

SENDER = "news@example.org"
TEXT = "Hello {{ member.first_name }},\n\nOur spring meeting is on Saturday at the town hall.\n"
HTML = "<p>Hello {{ member.first_name }},</p>\n<p>Our spring meeting is on Saturday at the town hall.</p>\n"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n0000000101 00000 n \n"
    b"trailer<</Size 4/Root 1 0 R>>\nstartxref\n170\n%%EOF\n"
)


# --- helpers ------------------------------------------------------------------------------------


class ReaderFactory(MemberFactory):
    first_name = "Ada"
    last_name = "Lovelace"


class MeetingFactory(DraftBurstFactory):
    subject = "Spring meeting, {{ member.first_name }}"
    body = TEXT
    sender = SENDER


def send(burst: EmailBurst) -> None:
    services.burst_send(burst_id=burst.pk)
    drive(burst.pk, rounds=10)


def parse(raw: bytes) -> EmailMessage:
    """`raw` as a receiver stores it: SMTP's CRLF become LF (else they show in every text part)."""
    assert_crlf_only(raw)
    return email.message_from_bytes(  # type: ignore[return-value]
        raw.replace(b"\r\n", b"\n"), policy=email.policy.default
    )


def assert_crlf_only(raw: bytes) -> None:
    """On the wire every line ends with CRLF: no bare CR or LF (RFC 5321 2.3.8)."""
    rest = raw.replace(b"\r\n", b"")
    assert b"\r" not in rest and b"\n" not in rest, "bare CR or LF on the wire"


def defects(message: EmailMessage) -> list[str]:
    found = []
    for part in message.walk():
        found += [f"{part.get_content_type()}: {d!r}" for d in part.defects]
        for name, value in part.items():
            found += [f"{name}: {d!r}" for d in getattr(value, "defects", ())]
    return found


def received_by(server, address: str) -> list[ReceivedMessage]:
    return [m for m in server.messages if address in m.rcpt_tos]


def one_message(server, address: str) -> tuple[ReceivedMessage, EmailMessage]:
    [received] = received_by(server, address)
    return received, parse(received.raw)


def text_part(message: EmailMessage) -> EmailMessage:
    parts = [p for p in message.walk() if p.get_content_type() == "text/plain" and not p.get_filename()]
    assert len(parts) == 1, [p.get_content_type() for p in message.walk()]
    return parts[0]


def html_parts(message: EmailMessage) -> list[EmailMessage]:
    return [p for p in message.walk() if p.get_content_type() == "text/html"]


@pytest.fixture
def engine(settings, smtp_settings, immediate_huey, tmp_path):
    settings.EMAIL_MAX_ATTEMPTS = 3
    settings.EMAIL_RETRY_DELAY = 0
    settings.EMAIL_RATE_LIMIT = None
    settings.UNSUBSCRIBE_MAILTO = ""
    settings.SITE_URL = "https://emailer.example.org"
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return smtp_settings


# --- structure -----------------------------------------------------------------------------------


def test_a_text_only_message_is_one_plain_text_part_without_defects(engine):
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada]))

    received, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert not message.is_multipart()
    assert "Our spring meeting is on Saturday" in message.get_content()
    assert message["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(message["Date"]) is not None
    assert received.rcpt_tos == ("ada@example.test",)
    assert received.mail_from == SENDER


def test_a_text_and_html_message_is_multipart_alternative_text_first(engine):
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada], html_body=HTML))

    _, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    assert message.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]  # the last part is the preferred one
    assert "Hello Ada," in text_part(message).get_content()
    [html] = html_parts(message)
    assert "<p>Hello Ada,</p>" in html.get_content()
    assert html.get_content_charset() == "utf-8"


def test_attachments_come_after_the_body_with_their_names_types_and_exact_bytes(engine, settings):
    ada = ReaderFactory(email="ada@example.test")
    burst = MeetingFactory(recipients=[ada], html_body=HTML)
    binary = bytes(range(256)) * 40
    AttachmentFactory(burst=burst, filename="programme.pdf", data=PDF, content_type="application/pdf")
    AttachmentFactory(burst=burst, filename="data.bin", data=binary, content_type="application/octet-stream")
    AttachmentFactory(
        burst=burst, filename="Prögramm für Zoë.txt", data="Grüße\n".encode(), content_type="text/plain"
    )
    attachment_files = [
        os.path.join(dirpath, f) for dirpath, _, files in os.walk(settings.MEDIA_ROOT) for f in files
    ]
    assert len(attachment_files) == 3, "the attachments are real files under MEDIA_ROOT"

    send(burst)

    _, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    assert message.get_content_type() == "multipart/mixed"
    body, *attachments = list(message.iter_parts())
    assert body.get_content_type() == "multipart/alternative"
    got = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in attachments]
    assert got == [
        ("programme.pdf", "application/pdf", PDF),
        ("data.bin", "application/octet-stream", binary),
        ("Prögramm für Zoë.txt", "text/plain", "Grüße\n".encode()),
    ]
    assert all(a.get_content_disposition() == "attachment" for a in attachments)
    assert "Hello Ada," in text_part(message).get_content()
    assert len(html_parts(message)) == 1


def test_a_text_only_message_with_an_attachment_is_multipart_mixed(engine):
    ada = ReaderFactory(email="ada@example.test")
    burst = MeetingFactory(recipients=[ada])
    AttachmentFactory(burst=burst, filename="programme.pdf", data=PDF, content_type="application/pdf")

    send(burst)

    _, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "application/pdf"]


def test_non_ascii_subject_names_and_bodies_survive_the_trip(engine):
    zoe = ReaderFactory(email="zoe@example.test", first_name="Zoë", last_name="Ångström-Øberg")
    send(
        MeetingFactory(
            recipients=[zoe],
            subject="Grüße, {{ member.first_name }} — ünïcödé ✓ 日本語",
            body="Liebe {{ member.full_name }},\n\nÇa va? Ünïcödé body — 😀 ✓\n",
            html_body="<p>Liebe {{ member.full_name }}, ça va? 😀</p>",
            from_name="Café Crème Club",
        )
    )

    received, message = one_message(engine, "zoe@example.test")
    assert defects(message) == []
    assert received.raw.isascii(), "8-bit data is encoded (no SMTPUTF8/8BITMIME needed)"
    assert message["Subject"] == "Grüße, Zoë — ünïcödé ✓ 日本語"
    assert message["From"].addresses[0].display_name == "Café Crème Club"
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["To"].addresses[0].display_name == "Zoë Ångström-Øberg"
    assert message["To"].addresses[0].addr_spec == "zoe@example.test"
    assert "Liebe Zoë Ångström-Øberg,\n\nÇa va? Ünïcödé body — 😀 ✓" in text_part(message).get_content()
    [html] = html_parts(message)
    assert "ça va? 😀" in html.get_content()


def test_long_non_ascii_header_values_are_folded_and_read_back_whole(engine):
    name = "Zoë-Éléonore " * 8
    ada = ReaderFactory(email="ada@example.test", first_name=name.strip(), last_name="Ångström " * 8)
    subject = "Grüße zum Frühlingstreffen des Rudervereins — " * 4
    from_name = "Ruderverein Grün-Weiß " * 4
    send(MeetingFactory(recipients=[ada], subject=subject.strip()[:200], from_name=from_name.strip()[:100]))

    received, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    head = received.raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert message["Subject"] == subject.strip()[:200]
    assert message["From"].addresses[0].display_name == from_name.strip()[:100]
    assert message["To"].addresses[0].display_name == f"{name.strip()} {('Ångström ' * 8).strip()}"


def test_a_long_subject_is_folded_and_read_back_whole(engine):
    ada = ReaderFactory(email="ada@example.test")
    subject = "A rather long subject line about the spring meeting " * 3
    send(MeetingFactory(recipients=[ada], subject=subject.strip()))

    received, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    assert message["Subject"] == subject.strip()
    assert all(len(line) <= 998 for line in received.raw.split(b"\r\n"))


def test_long_body_lines_are_encoded_within_the_line_limit(engine):
    ada = ReaderFactory(email="ada@example.test")
    long_line = "word " * 400
    send(MeetingFactory(recipients=[ada], body=long_line, html_body=f"<p>{long_line}</p>"))

    received, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    head, body = received.raw.split(b"\r\n\r\n", 1)
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    assert long_line.strip() in text_part(message).get_content()


def test_a_body_line_made_of_a_single_dot_is_delivered_intact(engine):
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada], body="Before\n.\n..\nAfter\n"))

    _, message = one_message(engine, "ada@example.test")
    assert "Before\n.\n..\nAfter\n" in text_part(message).get_content()


# --- headers -------------------------------------------------------------------------------------


def test_from_has_the_display_name_and_reply_to_is_set_when_given(engine):
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada], from_name="The Rowing Club", reply_to="secretary@example.org"))

    _, message = one_message(engine, "ada@example.test")
    assert message["From"].addresses[0].display_name == "The Rowing Club"
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["Reply-To"].addresses[0].addr_spec == "secretary@example.org"
    assert message["To"].addresses[0].addr_spec == "ada@example.test"
    assert message["To"].addresses[0].display_name == "Ada Lovelace"


def test_without_from_name_and_reply_to_from_is_the_bare_address_and_reply_to_is_absent(engine):
    ada = ReaderFactory(email="ada@example.test", first_name="", last_name="")
    send(MeetingFactory(recipients=[ada]))

    _, message = one_message(engine, "ada@example.test")
    assert message["From"].addresses[0].display_name == ""
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["Reply-To"] is None
    assert message["To"].addresses[0].addr_spec == "ada@example.test"


def test_a_display_name_with_specials_is_quoted(engine):
    ada = ReaderFactory(
        email="ada@example.test", first_name='Ada "the first"', last_name="Lovelace, Countess"
    )
    send(MeetingFactory(recipients=[ada], from_name="Club, Inc. <news>"))

    _, message = one_message(engine, "ada@example.test")
    assert defects(message) == []
    assert [(a.display_name, a.addr_spec) for a in message["From"].addresses] == [
        ("Club, Inc. <news>", SENDER)
    ]
    assert [a.addr_spec for a in message["To"].addresses] == ["ada@example.test"]
    assert message["To"].addresses[0].display_name == 'Ada "the first" Lovelace, Countess'


def test_message_id_is_the_same_on_every_retry_of_a_delivery_and_differs_between_deliveries(
    engine, monkeypatch
):
    tried: list[tuple[str, bytes]] = []
    deliver = smtp.SmtpSession.deliver

    def spy(self, sender, recipient, message, *args, **kwargs):  # records what goes on the wire
        tried.append((recipient, message))
        return deliver(self, sender, recipient, message, *args, **kwargs)

    monkeypatch.setattr(smtp.SmtpSession, "deliver", spy)
    grey = ReaderFactory(email="grey@example.test")
    ada = ReaderFactory(email="ada@example.test", username="ada2")
    engine.script("grey@example.test", "451 4.7.1 Greylisted, try again later", "data:451 4.3.0 Later")
    send(MeetingFactory(recipients=[grey, ada]))

    assert Delivery.objects.get(member=grey).attempts == 3
    grey_ids = {parse(raw)["Message-ID"] for rcpt, raw in tried if rcpt == "grey@example.test"}
    assert len([1 for rcpt, _ in tried if rcpt == "grey@example.test"]) == 3
    assert len(grey_ids) == 1
    [grey_id] = grey_ids
    _, got = one_message(engine, "grey@example.test")
    assert got["Message-ID"] == grey_id
    _, other = one_message(engine, "ada@example.test")
    assert other["Message-ID"] != grey_id
    for message_id in (grey_id, other["Message-ID"]):
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id)


def test_the_message_id_sent_is_the_one_the_delivery_reports(engine, settings):
    settings.SENDER_EMAIL = "noreply@emailer.example.net"
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada], sender="news@example.org"))

    _, message = one_message(engine, "ada@example.test")
    delivery = Delivery.objects.select_related("burst").get(member=ada)
    assert message["Message-ID"] == mime.message_id(
        burst_id=delivery.burst_id, delivery_id=delivery.pk, sender=delivery.burst.sender
    )


def test_list_headers_carry_the_unsubscribe_url_and_one_click(engine, settings):
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada]))

    _, message = one_message(engine, "ada@example.test")
    url = tokens.unsubscribe_url(ada.pk)
    assert url.startswith("https://emailer.example.org/unsubscribe/")
    assert message["List-Unsubscribe"] == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"[^<>]*<[^<>\s]+>", message["List-Id"])
    assert "mailto:" not in message["List-Unsubscribe"]


def test_list_unsubscribe_has_a_mailto_when_configured(engine, settings):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@example.org"
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada]))

    _, message = one_message(engine, "ada@example.test")
    value = message["List-Unsubscribe"]
    targets = re.findall(r"<([^<>]+)>", value)
    assert targets[0] == tokens.unsubscribe_url(ada.pk)
    assert len(targets) == 2
    assert targets[1].startswith("mailto:unsubscribe@example.org")


def test_every_member_gets_their_own_unsubscribe_link(engine):
    ada = ReaderFactory(email="ada@example.test")
    bob = ReaderFactory(email="bob@example.test", first_name="Bob")
    send(MeetingFactory(recipients=[ada, bob]))

    links = {}
    for member in (ada, bob):
        _, message = one_message(engine, member.email)
        links[member.email] = message["List-Unsubscribe"]
        assert tokens.unsubscribe_url(member.pk) in message["List-Unsubscribe"]
    assert links["ada@example.test"] != links["bob@example.test"]


def test_the_unsubscribe_link_is_in_the_footer_of_both_parts(engine):
    ada = ReaderFactory(email="ada@example.test")
    send(MeetingFactory(recipients=[ada], html_body=HTML))

    _, message = one_message(engine, "ada@example.test")
    url = tokens.unsubscribe_url(ada.pk)
    text = text_part(message).get_content()
    assert url in text
    assert text.rstrip().endswith(url), "in the footer, after the member's text"
    [html] = html_parts(message)
    content = html.get_content()
    assert f'href="{escape(url)}"' in content
    assert content.index(escape(url)) > content.index("town hall"), "after the burst's own HTML"
    assert content.rstrip().lower().endswith("</html>")


def test_an_html_body_that_is_a_whole_document_gets_its_footer_inside_body(engine):
    ada = ReaderFactory(email="ada@example.test")
    document = "<!DOCTYPE html><html><head><title>T</title></head><body><p>Hi {{ member.first_name }}</p></body></html>"
    send(MeetingFactory(recipients=[ada], html_body=document))

    _, message = one_message(engine, "ada@example.test")
    [html] = html_parts(message)
    content = html.get_content()
    url = escape(tokens.unsubscribe_url(ada.pk))
    assert content.index("<p>Hi Ada</p>") < content.index(url) < content.lower().index("</body>")
    assert content.lower().count("<html") == 1


def test_member_data_is_html_escaped_in_the_html_part(engine):
    mallory = ReaderFactory(
        email="mallory@example.test",
        first_name="<script>alert(1)</script>",
        last_name='"><img src=x onerror=alert(2)>',
    )
    send(
        MeetingFactory(
            recipients=[mallory],
            subject="Hi {{ member.first_name }}",
            html_body="<p>Hi {{ member.first_name }} {{ member.last_name }}</p><p>{{ member.full_name }}</p>",
        )
    )

    _, message = one_message(engine, "mallory@example.test")
    assert defects(message) == []
    [html] = html_parts(message)
    content = html.get_content()
    assert "<script>" not in content
    assert "<img" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    # the text part is not HTML: it carries the name as it is
    assert "<script>alert(1)</script>" in text_part(message).get_content()


# --- header injection ------------------------------------------------------------------------------

INJECTION = "Ada\r\nBcc: evil@example.org\r\nX-Injected: yes"


def assert_not_injected(server, address: str, *, check_defects: bool = True) -> EmailMessage:
    received_all = server.messages
    assert [m.rcpt_tos for m in received_all] == [(address,)]
    assert server.rcpt_attempts("evil@example.org") == 0
    received, message = one_message(server, address)
    names = {name.lower() for name in message.keys()}
    assert "bcc" not in names
    assert "x-injected" not in names
    assert "cc" not in names
    if check_defects:
        assert defects(message) == []
    head = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^(Bcc|X-Injected):", head, re.MULTILINE | re.IGNORECASE)
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    return message


def test_crlf_in_member_data_rendered_into_the_subject_adds_no_header_or_recipient(engine):
    ada = ReaderFactory(email="ada@example.test", first_name=INJECTION)
    send(MeetingFactory(recipients=[ada], subject="News for {{ member.first_name }}"))

    message = assert_not_injected(engine, "ada@example.test")
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert message["Subject"].startswith("News for Ada")


def test_crlf_in_member_names_adds_no_header_or_recipient(engine):
    ada = ReaderFactory(email="ada@example.test", first_name=INJECTION, last_name="Lovelace\nX-Injected: yes")
    send(MeetingFactory(recipients=[ada]))

    message = assert_not_injected(engine, "ada@example.test")
    assert "\n" not in str(message["To"])


def test_crlf_in_from_name_and_subject_is_refused_when_the_burst_is_saved(engine):
    ada = ReaderFactory(email="ada@example.test")
    with pytest.raises(services.InvalidInput) as caught:
        MeetingFactory(recipients=[ada], from_name="Club\r\nBcc: evil@example.org")
    assert caught.value.field == "from_name"
    with pytest.raises(services.InvalidInput) as caught:
        MeetingFactory(recipients=[ada], subject="Hi\nBcc: evil@example.org")
    assert caught.value.field == "subject"


def test_burst_send_refuses_crlf_in_a_from_name_that_reached_the_database(engine):
    ada = ReaderFactory(email="ada@example.test")
    burst = MeetingFactory(recipients=[ada])
    EmailBurst.objects.filter(pk=burst.pk).update(from_name="Club\r\nBcc: evil@example.org")

    with pytest.raises(services.InvalidInput) as caught:
        services.burst_send(burst_id=burst.pk)

    assert caught.value.field == "from_name"
    assert engine.message_count == 0


def test_crlf_in_from_name_and_reply_to_of_a_sending_burst_adds_no_header(engine):
    """An older row, the shell, a data migration: the message builder must hold by itself."""
    ada = ReaderFactory(email="ada@example.test")
    burst = MeetingFactory(recipients=[ada])
    EmailBurst.objects.filter(pk=burst.pk).update(
        status="sending",
        deliveries_ready=True,
        from_name="Club\r\nBcc: evil@example.org\r\nX-Injected: yes",
        reply_to="secretary@example.org\r\nX-Injected: yes",
    )
    DeliveryFactory(burst=burst, member=ada)

    services.chunk_process(burst_id=burst.pk)

    # The Reply-To that is left ("secretary@example.org X-Injected: yes" on one line) is not
    # a valid address, so the parser reports a defect there: that is the data, not an injection.
    message = assert_not_injected(engine, "ada@example.test", check_defects=False)
    assert [d for d in defects(message) if not d.startswith("Reply-To:")] == []
    assert message["From"].addresses[0].display_name == "Club Bcc: evil@example.org X-Injected: yes"
    assert message["From"].addresses[0].addr_spec == SENDER
    assert "\n" not in str(message["From"])


CRLF_ADDRESS = "ada@example.test\r\nBcc: evil@example.org"


def test_crlf_in_a_member_address_never_reaches_another_recipient(engine):
    ada = ReaderFactory(email=CRLF_ADDRESS, username="ada")
    ok = ReaderFactory(email="ok@example.test", username="ok")
    burst = MeetingFactory(recipients=[ada, ok])

    send(burst)

    assert engine.rcpt_attempts("evil@example.org") == 0
    for received in engine.messages:
        assert not any("evil" in rcpt for rcpt in received.rcpt_tos)
        message = parse(received.raw)
        assert "bcc" not in {name.lower() for name in message.keys()}
    assert Delivery.objects.get(member=ok).status == DeliveryStatus.SENT


def test_a_member_address_that_is_not_one_valid_address_is_other_error_and_never_sent(engine):
    ada = ReaderFactory(email=CRLF_ADDRESS, username="ada")
    ok = ReaderFactory(email="ok@example.test", username="ok")
    burst = MeetingFactory(recipients=[ada, ok])

    send(burst)

    assert engine.rcpt_attempts_by_address() == {"ok@example.test": 1}
    delivery = Delivery.objects.get(member=ada)
    assert delivery.status == DeliveryStatus.OTHER_ERROR
    assert delivery.attempts == 0


# --- SpamAssassin ------------------------------------------------------------------------------------------

SCORE = re.compile(r"^X-Spam-Status:.*?\bscore=(-?[\d.]+)", re.MULTILINE | re.DOTALL)
RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$", re.MULTILINE)


@pytest.fixture
def spamassassin() -> str:
    path = shutil.which("spamassassin") or (SPAMASSASSIN if os.path.exists(SPAMASSASSIN) else None)
    if not path:
        reason = f"needs SpamAssassin at {SPAMASSASSIN} (apt-get install -y spamassassin)"
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def test_every_message_of_a_realistic_burst_scores_at_most_half_a_point_with_spamassassin(
    engine, spamassassin, tmp_path
):
    people = [
        ("ada@example.test", "Ada", "Lovelace"),
        ("charles.babbage@example.test", "Charles", "Babbage"),
        ("zoe@example.test", "Zoë", "Ångström"),
        ("grace@example.test", "Grace", "Hopper"),
    ]
    members = [
        ReaderFactory(email=e, first_name=first, last_name=last, username=e.split("@")[0])
        for e, first, last in people
    ]
    burst = MeetingFactory(
        recipients=members,
        subject="Spring meeting of the rowing club on 12 April",
        body=(
            "Dear {{ member.first_name }},\n\n"
            "Our spring meeting takes place on Saturday 12 April at 10:00 in the boathouse.\n"
            "We will review the season's calendar, elect the new committee and plan the summer regatta.\n\n"
            "The agenda is attached. If you cannot come, you can give your vote to another member.\n\n"
            "Kind regards,\nMargaret Hamilton\nClub secretary\n"
        ),
        html_body=(
            "<p>Dear {{ member.first_name }},</p>\n"
            "<p>Our spring meeting takes place on Saturday 12 April at 10:00 in the boathouse.\n"
            "We will review the season's calendar, elect the new committee and plan the summer regatta.</p>\n"
            "<p>The agenda is attached. If you cannot come, you can give your vote to another member.</p>\n"
            "<p>Kind regards,<br>\nMargaret Hamilton<br>\nClub secretary</p>\n"
        ),
        from_name="Rowing Club",
        reply_to="secretary@example.org",
    )
    AttachmentFactory(burst=burst, filename="agenda.pdf", data=PDF, content_type="application/pdf")

    send(burst)

    assert len(engine.messages) == len(people)
    for received in engine.messages:
        assert defects(parse(received.raw)) == []

    # One SpamAssassin run over an mbox of every message (its start-up costs more than
    # checking a message); each message is scored on its own, as with one run each.
    box_path = tmp_path / "burst.mbox"
    box = mailbox.mbox(box_path)
    for received in engine.messages:
        box.add(mailbox.mboxMessage(received.raw.replace(b"\r\n", b"\n")))
    box.flush()
    box.close()
    home = tmp_path / "sa-home"
    home.mkdir()
    with box_path.open("rb") as stdin:
        run = subprocess.run(
            [spamassassin, "-L", "-t", "--mbox", "--cf=bayes_auto_learn 0"],
            stdin=stdin,
            capture_output=True,
            env={**os.environ, "HOME": str(home)},  # no user state shared between runs
            timeout=120,
        )
    output = run.stdout.decode("utf-8", "replace")
    reports = [chunk for chunk in re.split(r"(?m)^From \S+ .*\n", output) if chunk.strip()]
    assert len(reports) == len(people), f"SpamAssassin said: {run.stderr.decode()[-1000:]}"

    # SpamAssassin does not keep the mbox order: match reports by Message-ID
    by_id = {parse(m.raw)["Message-ID"]: m.rcpt_tos[0] for m in engine.messages}
    problems = []
    for report in reports:
        [message_id] = re.findall(r"(?mi)^Message-ID:\s*(<[^>]+>)", report.split("\n\n", 1)[0])
        address = by_id.pop(message_id)
        match = SCORE.search(report)
        assert match, f"no X-Spam-Status in SpamAssassin's output for {address}"
        score = float(match.group(1))
        details = report.split("Content analysis details:", 1)[-1]
        rules = [f"{pts} {name} {desc.strip()}" for pts, name, desc in RULE_LINE.findall(details)]
        print(f"SpamAssassin {address}: score {score}; rules hit: {rules}")  # shown with -s or on failure
        if score > SPAM_LIMIT:
            problems.append(f"{address}: score {score} > {SPAM_LIMIT}; rules hit: {rules}")
    assert by_id == {}, "every message was scored"
    assert not problems, "\n".join(problems)
