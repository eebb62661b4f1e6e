"""Test sends (SPEC section 11): `services.burst_send_test` against the real aiosmtpd
sink. Up to 10 typed addresses on one connection, rendered for a chosen member
(default: the person asking), `[TEST] ` subjects, a new Message-ID every time, and an
unsubscribe link that unsubscribes nobody; the burst, its deliveries and its counters
are left as they were."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from campaigns import services
from campaigns.engine import mime, tokens
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from common.errors import InvalidInput, NotFound
from devtools.smtp_sink import ReceivedMessage, find_free_port
from members.models import Member
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory
from tests.smtpd import point_email_settings

pytestmark = pytest.mark.django_db

SENDER = "news@example.org"
BODY = "Hello {{ member.first_name }},\nthe meeting is on Saturday.\nLeave us: {{ unsubscribe_url }}\n"
HTML = '<p>Hello {{ member.first_name }}</p><p><a href="{{ unsubscribe_url }}">Leave us</a></p>'
THREE = ["one@example.org", "two@example.org", "three@example.org"]
SECRET = "s3cret-pass-word"


@pytest.fixture
def ada(db) -> Member:
    return MemberFactory(username="ada", email="ada@example.org", first_name="Ada", last_name="Lovelace")


@pytest.fixture
def burst(ada) -> EmailBurst:
    return BurstFactory(
        subject="Spring meeting, {{ member.first_name }}",
        body=BODY,
        html_body=HTML,
        sender=SENDER,
        recipients=[ada],
    )


def unsubscribe_test_link(settings) -> str:
    return f"{settings.SITE_URL}/unsubscribe/test/"


def message_ids(messages: list[ReceivedMessage]) -> list[str]:
    return [m.header("Message-ID") for m in messages]


def text_part(message: ReceivedMessage) -> str:
    return message.message.get_body(preferencelist=("plain",)).get_content()


def html_part(message: ReceivedMessage) -> str:
    return message.message.get_body(preferencelist=("html",)).get_content()


# --- what is sent -----------------------------------------------------------------------------------


def test_three_addresses_get_three_messages_on_one_connection(smtp_settings, burst, ada, staff_user):
    report = services.burst_send_test(burst_id=burst.pk, emails=THREE, member_id=ada.pk, actor=staff_user)

    assert report.sent_to == THREE and report.refused == {} and report.rendered_for == ada
    assert smtp_settings.connection_count == 1
    assert [m.rcpt_tos for m in smtp_settings.messages] == [(a,) for a in THREE]
    assert [m.header("To") for m in smtp_settings.messages] == THREE
    assert {m.mail_from for m in smtp_settings.messages} == {SENDER}


def test_the_subject_is_prefixed_and_the_message_rendered_for_the_chosen_member(
    smtp_settings, burst, ada, staff_user
):
    services.burst_send_test(burst_id=burst.pk, emails=THREE[:1], member_id=ada.pk, actor=staff_user)

    [message] = smtp_settings.messages
    assert message.subject == "[TEST] Spring meeting, Ada"
    assert "Hello Ada," in text_part(message)
    assert "<p>Hello Ada</p>" in html_part(message)
    assert message.message.defects == []


def test_it_is_rendered_for_the_person_asking_by_default(smtp_settings, burst, staff_user):
    report = services.burst_send_test(burst_id=burst.pk, emails=THREE[:1], actor=staff_user)

    assert report.rendered_for == staff_user
    [message] = smtp_settings.messages
    assert message.subject == "[TEST] Spring meeting, Sam"
    assert "Hello Sam," in text_part(message)


def test_every_message_gets_a_new_message_id(smtp_settings, burst, ada, staff_user):
    services.burst_send_test(burst_id=burst.pk, emails=THREE, member_id=ada.pk, actor=staff_user)
    services.burst_send_test(burst_id=burst.pk, emails=THREE[:1], member_id=ada.pk, actor=staff_user)

    ids = message_ids(smtp_settings.messages)
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(re.fullmatch(r"<burst\d+\.test\.[0-9a-f]{32}@example\.org>", i) for i in ids)
    # Never the id of a delivery: a test is not a (retry of a) delivery.
    assert mime.message_id(burst_id=burst.pk, delivery_id=0, sender=SENDER) not in ids


def test_the_unsubscribe_link_points_to_the_test_page_only(smtp_settings, settings, burst, ada, staff_user):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@example.org"
    services.burst_send_test(burst_id=burst.pk, emails=THREE[:1], member_id=ada.pk, actor=staff_user)

    [message] = smtp_settings.messages
    link = unsubscribe_test_link(settings)
    assert message.header("List-Unsubscribe") == f"<{link}>"  # no mailto: it would unsubscribe a reader
    assert message.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert f"Leave us: {link}" in text_part(message)
    assert f'<a href="{link}">Leave us</a>' in html_part(message)
    raw = message.raw.decode("ascii", "replace")
    for member in (ada, staff_user):
        assert tokens.unsubscribe_token(member.pk) not in raw


def test_following_the_test_unsubscribe_link_changes_nothing(smtp_settings, settings, burst, ada, staff_user):
    services.burst_send_test(burst_id=burst.pk, emails=[ada.email], member_id=ada.pk, actor=staff_user)
    [link] = re.findall(r"<(http[^>]+)>", smtp_settings.messages[0].header("List-Unsubscribe"))
    path = link.removeprefix(settings.SITE_URL)
    client = Client(enforce_csrf_checks=True)

    answers = [
        client.get(path),
        client.post(path),
        client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"),
    ]

    for answer in answers:
        assert answer.status_code == 200
        assert "This was a test message; nothing was changed" in answer.content.decode()
        assert "script-src 'none'" in answer["Content-Security-Policy"]
    assert Member.objects.filter(unsubscribed_at__isnull=False).count() == 0


def test_the_burst_its_deliveries_and_counters_are_untouched(smtp_settings, ada, staff_user):
    others = MemberFactory.create_bulk(3)
    sent = BurstFactory(
        subject="Done {{ member.first_name }}", status=BurstStatus.SENT, recipients=[ada, *others]
    )
    DeliveryFactory.create_for(sent, [ada, *others], status=DeliveryStatus.SENT)
    draft = BurstFactory(subject="Draft", recipients=[ada])
    before = {
        b.pk: (b.status, b.counts, b.updated_at, b.started_at, b.finished_at)
        for b in EmailBurst.objects.filter(pk__in=[sent.pk, draft.pk])
    }
    deliveries = list(Delivery.objects.order_by("pk").values())

    for burst in (sent, draft):
        services.burst_send_test(burst_id=burst.pk, emails=THREE, member_id=ada.pk, actor=staff_user)

    assert smtp_settings.message_count == 6
    after = {
        b.pk: (b.status, b.counts, b.updated_at, b.started_at, b.finished_at)
        for b in EmailBurst.objects.filter(pk__in=[sent.pk, draft.pk])
    }
    assert after == before
    assert list(Delivery.objects.order_by("pk").values()) == deliveries
    assert not Delivery.objects.filter(burst=draft).exists()


def test_the_same_address_in_another_case_gets_one_message(smtp_settings, burst, staff_user):
    report = services.burst_send_test(
        burst_id=burst.pk,
        emails=["Ann@Example.org", "ann@example.ORG", " ann@example.org "],
        actor=staff_user,
    )

    assert report.sent_to == ["Ann@Example.org"]  # as first typed
    assert smtp_settings.message_count == 1


# --- what is refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "emails",
    [[], [f"reader{i}@example.org" for i in range(11)]],
    ids=["none", "eleven"],
)
def test_it_takes_one_to_ten_addresses(smtp_settings, burst, staff_user, emails):
    with pytest.raises(InvalidInput) as refused:
        services.burst_send_test(burst_id=burst.pk, emails=emails, actor=staff_user)
    assert refused.value.field == "emails"
    assert smtp_settings.connection_count == 0


def test_ten_addresses_are_fine(smtp_settings, burst, staff_user):
    emails = [f"reader{i}@example.org" for i in range(10)]
    assert services.burst_send_test(burst_id=burst.pk, emails=emails, actor=staff_user).sent_to == emails
    assert (smtp_settings.connection_count, smtp_settings.message_count) == (1, 10)


@pytest.mark.parametrize(
    "bad", ["not-an-address", "a@b@example.org", '"two words"@example.org', "x@-bad-.org"]
)
def test_an_invalid_address_is_refused_naming_it_and_nothing_is_sent(smtp_settings, burst, staff_user, bad):
    with pytest.raises(InvalidInput) as refused:
        services.burst_send_test(burst_id=burst.pk, emails=["good@example.org", bad], actor=staff_user)
    assert refused.value.field == "emails" and bad in refused.value.message
    assert smtp_settings.connection_count == 0


def test_an_unknown_member_is_refused_naming_member(smtp_settings, burst, staff_user):
    with pytest.raises(InvalidInput) as refused:
        services.burst_send_test(burst_id=burst.pk, emails=THREE, member_id=987_654, actor=staff_user)
    assert refused.value.field == "member"
    assert smtp_settings.connection_count == 0


def test_an_unknown_burst_is_not_found(smtp_settings, staff_user):
    with pytest.raises(NotFound):
        services.burst_send_test(burst_id=987_654, emails=THREE, actor=staff_user)


def test_broken_templates_are_refused_before_anything_is_sent(smtp_settings, ada, staff_user):
    broken = BurstFactory(subject="Hi", body="Hello {% for x in %}", recipients=[ada])
    with pytest.raises(InvalidInput) as refused:
        services.burst_send_test(burst_id=broken.pk, emails=THREE, actor=staff_user)
    assert refused.value.field == "body"
    assert smtp_settings.connection_count == 0


def test_a_refused_address_is_reported_on_its_own(smtp_settings, burst, staff_user):
    emails = ["one@example.org", "unknown.reader@example.org", "reject.me@example.org", "two@example.org"]
    report = services.burst_send_test(burst_id=burst.pk, emails=emails, actor=staff_user)

    assert report.sent_to == ["one@example.org", "two@example.org"]
    assert set(report.refused) == {"unknown.reader@example.org", "reject.me@example.org"}
    assert "550" in report.refused["unknown.reader@example.org"]
    assert "554" in report.refused["reject.me@example.org"]
    assert smtp_settings.connection_count == 1
    assert [m.rcpt_tos for m in smtp_settings.messages] == [("one@example.org",), ("two@example.org",)]


def test_every_address_refused_is_invalid_input_naming_each(smtp_settings, burst, staff_user):
    emails = ["unknown.one@example.org", "reject.two@example.org"]
    with pytest.raises(InvalidInput) as refused:
        services.burst_send_test(burst_id=burst.pk, emails=emails, actor=staff_user)
    assert refused.value.field == "emails"
    assert all(address in refused.value.message for address in emails)


def test_an_unreachable_server_is_a_clear_error(settings, burst, staff_user):
    port = find_free_port()
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 1
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "mailer", SECRET
    with pytest.raises(services.MailServerUnavailable) as failed:
        services.burst_send_test(burst_id=burst.pk, emails=THREE, actor=staff_user)
    assert f"127.0.0.1:{port}" in failed.value.message
    assert SECRET not in failed.value.message


def test_a_refused_login_is_a_clear_error_without_the_password(
    smtp_server_factory, settings, burst, staff_user
):
    server = smtp_server_factory(auth=("mailer", "the-right-one"))
    point_email_settings(settings, server, user="mailer", password=SECRET)
    with pytest.raises(services.MailServerUnavailable) as failed:
        services.burst_send_test(burst_id=burst.pk, emails=THREE, actor=staff_user)
    assert "authentication" in failed.value.message.lower()
    assert SECRET not in failed.value.message
    assert server.message_count == 0
