"""A burst's life: starting, recipients, whole-burst faults, pause/resume/cancel,
finishing, statistics, retry, scheduling and recovery (SPEC section 5, issue 3).

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by calling `chunk_send`.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from campaigns import sending, services, tasks
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from campaigns.services import IllegalState, InvalidInput
from campaigns.smtp_sink import find_free_port
from members.models import Member
from tests.smtpd import point_email_settings

pytestmark = pytest.mark.django_db(transaction=True)

SUBJECT = "News for {{ member.first_name|default:'you' }}"
BODY = "Hello {{ member.full_name }},\n\nThe news of the month.\n"


# --- helpers ---------------------------------------------------------------------------------


def make_member(email: str, **fields) -> Member:
    username = fields.pop("username", email.split("@")[0])
    fields.setdefault("first_name", "Test")
    return Member.objects.create_user(username=username, email=email, password=None, **fields)


def make_members(n: int, prefix: str = "m") -> list[Member]:
    return [make_member(f"{prefix}{i:02d}@example.test") for i in range(n)]


def make_burst(members=(), **fields) -> EmailBurst:
    fields.setdefault("subject", SUBJECT)
    fields.setdefault("body", BODY)
    fields.setdefault("sender", "news@example.org")
    return services.burst_create(recipient_ids=[m.pk for m in members], **fields)


def statuses(burst: EmailBurst) -> dict[str, str]:
    return dict(Delivery.objects.filter(burst=burst).values_list("email", "status"))


def pending(burst: EmailBurst):
    return Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING)


def drive(burst_id: int, *, rounds: int = 20) -> None:
    for _ in range(rounds):
        waiting = Delivery.objects.filter(burst_id=burst_id, status=DeliveryStatus.PENDING)
        if not waiting.exists():
            return
        waiting.update(next_attempt_at=None)
        sending.chunk_send(burst_id=burst_id)
    raise AssertionError("deliveries still pending")


def sending_burst_with_pending(members, **fields) -> EmailBurst:
    """A burst in `sending` whose pending deliveries exist and no worker holds yet."""
    burst = make_burst(members, **fields)
    now = timezone.now()
    EmailBurst.objects.filter(pk=burst.pk).update(
        status=BurstStatus.SENDING, started_at=now, deliveries_ready=True
    )
    Delivery.objects.bulk_create(
        Delivery(burst=burst, member=m, email=m.email, status=DeliveryStatus.PENDING) for m in members
    )
    burst.refresh_from_db()
    return burst


def burst_row(burst: EmailBurst) -> dict:
    return EmailBurst.objects.filter(pk=burst.pk).values().get()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def engine(settings, smtp_settings, immediate_huey):
    settings.EMAIL_MAX_ATTEMPTS = 3
    settings.EMAIL_RETRY_DELAY = 0
    settings.EMAIL_PAUSE_AFTER = 100
    settings.EMAIL_RATE_LIMIT = None
    settings.EMAIL_CHUNK_SIZE = 50
    return smtp_settings


# --- starting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", [BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED]
)
def test_burst_send_refuses_a_burst_that_is_not_draft_or_scheduled_and_changes_nothing(engine, status):
    members = make_members(2)
    burst = make_burst(members)
    EmailBurst.objects.filter(pk=burst.pk).update(status=status)
    before = burst_row(burst)

    with pytest.raises(IllegalState):
        services.burst_send(burst_id=burst.pk)

    assert burst_row(burst) == before
    assert not Delivery.objects.filter(burst=burst).exists()
    assert engine.message_count == 0
    assert engine.connection_count == 0


@pytest.mark.parametrize(
    ("field", "source"),
    [
        ("subject", "Hello {% if %}"),
        ("body", "Hello {{ member.first_name|no_such_filter }}"),
        ("body", "{% for x in %}{% endfor %}"),
        ("html_body", "<p>{% endif %}</p>"),
        ("body", "{% load static %}hi"),
        # compiles, but does not render for a member whose optional fields are empty
        ("body", "{{ member.first_name|divisibleby:2 }}"),
    ],
)
def test_burst_send_refuses_a_broken_template_before_any_message_leaves(engine, field, source):
    members = make_members(3)
    burst = make_burst(members, html_body="<p>Hi</p>")
    # The services refuse such a template when it is saved; it can still reach the
    # row another way (an older version, a data migration, the shell).
    EmailBurst.objects.filter(pk=burst.pk).update(**{field: source})

    with pytest.raises(InvalidInput) as caught:
        services.burst_send(burst_id=burst.pk)

    assert caught.value.field == field
    burst.refresh_from_db()
    assert burst.status == BurstStatus.DRAFT
    assert burst.started_at is None
    assert not Delivery.objects.filter(burst=burst).exists()
    assert engine.message_count == 0
    assert engine.connection_count == 0


def test_burst_send_refuses_a_burst_without_recipients(engine):
    burst = make_burst([])
    with pytest.raises(InvalidInput) as caught:
        services.burst_send(burst_id=burst.pk)
    assert caught.value.field == "recipients"
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


def test_it_creates_one_delivery_per_recipient_and_mails_each_once(engine):
    members = make_members(7)
    burst = make_burst(members)

    returned = services.burst_send(burst_id=burst.pk)

    assert returned.status == BurstStatus.SENDING  # what the caller saw
    deliveries = Delivery.objects.filter(burst=burst)
    assert deliveries.count() == 7
    assert sorted(deliveries.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    assert {d.email for d in deliveries} == {m.email for m in members}
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert engine.received_count_by_address() == {m.email: 1 for m in members}
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert burst.deliveries_ready
    assert burst.started_at is not None and burst.finished_at is not None
    # creating the deliveries again adds nothing
    assert services.burst_create_deliveries(burst_id=burst.pk) == 0
    assert Delivery.objects.filter(burst=burst).count() == 7


def test_a_large_burst_gets_its_deliveries_from_a_task_and_is_finished_only_after(engine, monkeypatch):
    monkeypatch.setattr(services, "INLINE_DELIVERY_LIMIT", 2)
    monkeypatch.setattr(services, "CREATE_BATCH", 2)
    members = make_members(5)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert Delivery.objects.filter(burst=burst).count() == 5
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_it_keeps_the_address_used_at_send_time_on_the_delivery(engine):
    ada = make_member("ada@example.test")
    burst = make_burst([ada])
    services.burst_send(burst_id=burst.pk)
    Member.objects.filter(pk=ada.pk).update(email="ada.new@example.test")

    assert Delivery.objects.get(burst=burst).email == "ada@example.test"


def test_it_skips_unsubscribed_and_inactive_members_with_a_reason(engine):
    ok = make_member("ok@example.test")
    gone = make_member("gone@example.test", unsubscribed_at=timezone.now())
    inactive = make_member("inactive@example.test", is_active=False)
    burst = make_burst([ok, gone, inactive])

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst) == {
        "ok@example.test": DeliveryStatus.SENT,
        "gone@example.test": DeliveryStatus.SKIPPED,
        "inactive@example.test": DeliveryStatus.SKIPPED,
    }
    assert "unsubscribed" in Delivery.objects.get(burst=burst, member=gone).error_message
    assert "inactive" in Delivery.objects.get(burst=burst, member=inactive).error_message
    skipped = Delivery.objects.filter(burst=burst, status=DeliveryStatus.SKIPPED)
    assert set(skipped.values_list("attempts", flat=True)) == {0}
    assert engine.received_count_by_address() == {"ok@example.test": 1}


def test_a_member_whose_last_delivery_was_not_found_is_suppressed_until_the_address_changes(engine):
    bob = make_member("bob@example.test")
    ada = make_member("ada@example.test")
    engine.script("bob@example.test", "550 5.1.1 User unknown")

    first = make_burst([bob, ada])
    services.burst_send(burst_id=first.pk)
    assert statuses(first)["bob@example.test"] == DeliveryStatus.NOT_FOUND

    second = make_burst([bob, ada])
    services.burst_send(burst_id=second.pk)
    skipped = Delivery.objects.get(burst=second, member=bob)
    assert skipped.status == DeliveryStatus.SKIPPED
    assert "suppressed" in skipped.error_message

    # a skipped delivery does not lift the suppression
    third = make_burst([bob, ada])
    services.burst_send(burst_id=third.pk)
    assert statuses(third)["bob@example.test"] == DeliveryStatus.SKIPPED
    assert engine.rcpt_attempts("bob@example.test") == 1

    # a new address is mailed again
    Member.objects.filter(pk=bob.pk).update(email="robert@example.test")
    fourth = make_burst([bob, ada])
    services.burst_send(burst_id=fourth.pk)
    assert statuses(fourth) == {
        "robert@example.test": DeliveryStatus.SENT,
        "ada@example.test": DeliveryStatus.SENT,
    }
    assert engine.received_count("robert@example.test") == 1


def test_suppression_compares_addresses_case_insensitively(engine):
    bob = make_member("Bob@Example.test")
    engine.script("bob@example.test", "550 5.1.1 User unknown")
    first = make_burst([bob])
    services.burst_send(burst_id=first.pk)
    Member.objects.filter(pk=bob.pk).update(email="bob@example.test")

    second = make_burst([bob])
    services.burst_send(burst_id=second.pk)

    assert Delivery.objects.get(burst=second).status == DeliveryStatus.SKIPPED


def test_a_failed_delivery_does_not_suppress_the_member(engine):
    bob = make_member("bob@example.test")
    engine.script("bob@example.test", "554 5.7.1 Spam")
    services.burst_send(burst_id=make_burst([bob]).pk)

    second = make_burst([bob])
    services.burst_send(burst_id=second.pk)

    assert Delivery.objects.get(burst=second).status == DeliveryStatus.SENT


def test_all_members_includes_staff_and_ignores_verification(engine, staff_user, superuser):
    verified = make_member("verified@example.test", is_verified=True)
    unverified = make_member("unverified@example.test", is_verified=False)
    make_member("inactive@example.test", is_active=False)
    make_member("gone@example.test", unsubscribed_at=timezone.now())
    burst = make_burst([], all_members=True)

    services.burst_send(burst_id=burst.pk)

    expected = {staff_user.email, superuser.email, verified.email, unverified.email}
    assert statuses(burst) == {email: DeliveryStatus.SENT for email in expected}
    assert set(engine.received_count_by_address()) == expected


def test_all_members_is_resolved_at_send_time(engine):
    early = make_member("early@example.test")
    burst = make_burst([], all_members=True)
    late = make_member("late@example.test")
    Member.objects.filter(pk=early.pk).update(unsubscribed_at=timezone.now())

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst) == {late.email: DeliveryStatus.SENT}


# --- whole-burst faults -------------------------------------------------------------------------------


def test_an_auth_failure_pauses_the_burst_at_once_and_resume_mails_only_the_rest(
    settings, smtp_server_factory, immediate_huey
):
    """The password is rotated on the server in the middle of the burst."""
    settings.EMAIL_MAX_ATTEMPTS = 3
    settings.EMAIL_RETRY_DELAY = 0
    settings.EMAIL_PAUSE_AFTER = 100
    settings.EMAIL_CHUNK_SIZE = 50
    server = None

    def rotate_password(event):
        # When m01 is answered 421 (and the engine reconnects), the server's
        # password changes: the new connection's AUTH is refused.
        if event.stage == "rcpt" and event.address == "m01@example.test" and event.code == 421:
            server.auth = ("u", "rotated")

    server = smtp_server_factory(auth=("u", "p"), on_event=rotate_password)
    point_email_settings(settings, server, user="u", password="p")
    members = make_members(5)
    server.script("m01@example.test", "421 4.4.2 Closing connection")
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    assert "535" in burst.pause_reason
    assert "auth" in burst.pause_reason.lower()
    assert statuses(burst) == {
        "m00@example.test": DeliveryStatus.SENT,
        "m01@example.test": DeliveryStatus.PENDING,  # waits for its retry
        "m02@example.test": DeliveryStatus.PENDING,
        "m03@example.test": DeliveryStatus.PENDING,
        "m04@example.test": DeliveryStatus.PENDING,
    }
    # paused at the first refusal: one connection's AUTH refused (smtplib tries each
    # mechanism the server offers on it), no further connection
    refused = [a for a in server.auth_attempts if not a.success]
    assert len({a.peer for a in refused}) == 1
    assert server.connection_count == 2
    assert Delivery.objects.get(burst=burst, member=members[2]).attempts == 0
    assert not pending(burst).exclude(claim_token="").exists(), "nothing is left claimed"

    # nothing happens while paused
    sending.chunk_send(burst_id=burst.pk)
    assert server.message_count == 1

    settings.EMAIL_HOST_PASSWORD = "rotated"
    services.burst_resume(burst_id=burst.pk)
    drive(burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert burst.pause_reason == ""
    assert set(statuses(burst).values()) == {DeliveryStatus.SENT}
    assert server.received_count_by_address() == {m.email: 1 for m in members}
    assert Delivery.objects.get(burst=burst, member=members[1]).attempts == 2


def test_an_auth_failure_on_the_first_connection_sends_nothing(settings, smtp_server_factory, immediate_huey):
    server = smtp_server_factory(auth=("u", "p"))
    point_email_settings(settings, server, user="u", password="wrong")
    members = make_members(3)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    assert "535" in burst.pause_reason
    assert set(statuses(burst).values()) == {DeliveryStatus.PENDING}
    assert set(Delivery.objects.filter(burst=burst).values_list("attempts", flat=True)) == {0}
    assert len({a.peer for a in server.auth_attempts}) == 1
    assert server.connection_count == 1
    assert server.message_count == 0


@pytest.mark.parametrize(("user", "password"), [("u", ""), ("", "p"), ("", "")])
def test_auth_is_not_attempted_unless_both_user_and_password_are_set(
    settings, smtp_server_factory, immediate_huey, user, password
):
    server = smtp_server_factory(auth=("u", "p"), auth_required=False)
    point_email_settings(settings, server, user=user, password=password)
    members = make_members(2)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    assert not server.auth_attempted
    assert set(statuses(burst).values()) == {DeliveryStatus.SENT}


def test_auth_with_the_right_credentials_sends(settings, smtp_server_factory, immediate_huey):
    server = smtp_server_factory(auth=("u", "p"))
    point_email_settings(settings, server, user="u", password="p")
    members = make_members(3)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    assert set(statuses(burst).values()) == {DeliveryStatus.SENT}
    assert server.connection_count == 1, "one connection for the whole chunk"
    assert [m.auth_login for m in server.messages] == ["u", "u", "u"]


@pytest.mark.parametrize("reply", ["553 5.7.1 Sender address rejected", "550 5.7.60 Sender not allowed"])
def test_a_refused_sender_pauses_the_burst_and_resume_sends_everyone_once(engine, reply):
    engine.script_sender(reply)
    members = make_members(4)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    code = reply.split()[0]
    assert code in burst.pause_reason
    assert "news@example.org" in burst.pause_reason
    assert set(statuses(burst).values()) == {DeliveryStatus.PENDING}
    assert set(Delivery.objects.filter(burst=burst).values_list("attempts", flat=True)) == {0}
    assert engine.message_count == 0

    services.burst_resume(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_consecutive_connection_failures_pause_the_burst(settings, immediate_huey, smtp_server_factory):
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = find_free_port()  # nobody listens there
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 2
    settings.EMAIL_PAUSE_AFTER = 3
    settings.EMAIL_MAX_ATTEMPTS = 4
    settings.EMAIL_RETRY_DELAY = 0
    members = make_members(6)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    assert "3 consecutive connection failures" in burst.pause_reason
    assert set(statuses(burst).values()) == {DeliveryStatus.PENDING}
    attempts = list(Delivery.objects.filter(burst=burst).order_by("id").values_list("attempts", flat=True))
    assert attempts == [1, 1, 1, 0, 0, 0]

    server = smtp_server_factory()
    point_email_settings(settings, server)
    services.burst_resume(burst_id=burst.pk)
    drive(burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert server.received_count_by_address() == {m.email: 1 for m in members}


def test_a_streak_of_connection_failures_that_a_working_reply_breaks_does_not_pause(engine, settings):
    settings.EMAIL_PAUSE_AFTER = 2
    members = make_members(5)
    for member in members[::2]:  # m00, m02, m04: dropped once each, never two in a row
        engine.script(member.email, "rcpt:drop")
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    burst.refresh_from_db()
    assert (burst.status, burst.pause_reason) == (BurstStatus.SENT, "")
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_a_small_burst_against_a_dead_server_pauses_instead_of_failing_everyone(settings, immediate_huey):
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = find_free_port()
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_PAUSE_AFTER = 4
    settings.EMAIL_MAX_ATTEMPTS = 4
    settings.EMAIL_RETRY_DELAY = 0
    members = make_members(2)
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)
    for _ in range(6):  # the retries a consumer would run
        if EmailBurst.objects.get(pk=burst.pk).status != BurstStatus.SENDING:
            break
        pending(burst).update(next_attempt_at=None)
        sending.chunk_send(burst_id=burst.pk)

    # 8 consecutive connection failures (2 recipients x 4 attempts) went by
    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    assert set(statuses(burst).values()) == {DeliveryStatus.PENDING}


def test_a_sender_with_an_idn_domain_is_refused_when_saved_or_sent_in_ascii_form(engine):
    members = make_members(2)
    try:
        burst = make_burst(members, sender="news@b\u00fccher.example")
    except InvalidInput as exc:
        assert exc.field == "sender"
        return

    services.burst_send(burst_id=burst.pk)

    assert set(statuses(burst).values()) == {DeliveryStatus.SENT}
    assert {m.mail_from for m in engine.messages} == {"news@xn--bcher-kva.example"}


def test_a_pending_delivery_of_a_deleted_member_is_never_tried(engine):
    members = make_members(2)
    burst = sending_burst_with_pending(members)
    members[0].delete()

    sending.chunk_send(burst_id=burst.pk)

    gone = Delivery.objects.get(burst=burst, member__isnull=True)
    assert gone.email == ""
    # skipped would fit best (the member is gone on purpose); other_error is tolerated
    assert gone.status in (DeliveryStatus.SKIPPED, DeliveryStatus.OTHER_ERROR)
    assert gone.attempts == 0
    assert engine.rcpt_attempts_by_address() == {"m01@example.test": 1}


# --- pause, resume, cancel ----------------------------------------------------------------------


def test_pause_stops_a_sending_burst_and_resume_sends_the_rest(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)

    services.burst_pause(burst_id=burst.pk, reason="Checking a typo")
    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    assert burst.pause_reason == "Checking a typo"

    result = sending.chunk_send(burst_id=burst.pk)
    assert result.stopped == BurstStatus.PAUSED
    assert engine.message_count == 0
    assert set(statuses(burst).values()) == {DeliveryStatus.PENDING}
    assert not pending(burst).exclude(claim_token="").exists()

    services.burst_resume(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_pause_and_resume_refuse_the_wrong_states(engine):
    burst = make_burst(make_members(1))
    with pytest.raises(IllegalState):
        services.burst_pause(burst_id=burst.pk)
    with pytest.raises(IllegalState):
        services.burst_resume(burst_id=burst.pk)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


def test_cancel_makes_the_remaining_deliveries_skipped(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)
    Delivery.objects.filter(burst=burst, member=members[0]).update(
        status=DeliveryStatus.SENT, attempts=1, sent_at=timezone.now()
    )

    services.burst_cancel(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.CANCELLED
    assert burst.finished_at is not None
    assert statuses(burst) == {
        "m00@example.test": DeliveryStatus.SENT,
        "m01@example.test": DeliveryStatus.SKIPPED,
        "m02@example.test": DeliveryStatus.SKIPPED,
        "m03@example.test": DeliveryStatus.SKIPPED,
    }
    sending.chunk_send(burst_id=burst.pk)
    assert engine.message_count == 0
    with pytest.raises(IllegalState):
        services.burst_resume(burst_id=burst.pk)


def test_cancel_works_on_a_paused_burst(engine):
    burst = sending_burst_with_pending(make_members(2))
    services.burst_pause(burst_id=burst.pk)

    services.burst_cancel(burst_id=burst.pk)

    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.CANCELLED
    assert set(statuses(burst).values()) == {DeliveryStatus.SKIPPED}


def _act_on_rcpt_of(address: str, action):
    """A sink observer that runs `action` once, when `address` is first RCPT'd, before the
    reply goes out.

    The sink calls observers in its event loop, where Django refuses database access:
    the action runs in a thread of its own, and the loop waits for it."""
    done = threading.Event()

    def run():
        try:
            action()
        finally:
            db_connection.close()  # this thread's own connection

    def on_event(event):
        if event.stage == "rcpt" and event.address == address and event.kind == "reply" and not done.is_set():
            done.set()
            thread = threading.Thread(target=run)
            thread.start()
            thread.join(10)

    return on_event


def test_cancel_while_a_chunk_is_in_flight_skips_the_rest_of_the_chunk(
    settings, smtp_server_factory, immediate_huey, monkeypatch
):
    monkeypatch.setattr(sending, "FLUSH_EVERY", 1)  # the worker looks at the burst after each message
    members = make_members(6)
    burst = make_burst(members)
    server = smtp_server_factory(
        on_event=_act_on_rcpt_of("m02@example.test", lambda: services.burst_cancel(burst_id=burst.pk))
    )
    point_email_settings(settings, server)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.CANCELLED
    got = statuses(burst)
    received = server.received_count_by_address()
    # what went before is sent; m02, in flight when the cancel came, ends with its real
    # outcome (sent, or skipped when its message never left); the rest are skipped
    assert got["m00@example.test"] == got["m01@example.test"] == DeliveryStatus.SENT
    assert got["m02@example.test"] == (
        DeliveryStatus.SENT if "m02@example.test" in received else DeliveryStatus.SKIPPED
    )
    assert [got[f"m0{i}@example.test"] for i in (3, 4, 5)] == [DeliveryStatus.SKIPPED] * 3
    assert received == {email: 1 for email, status in got.items() if status == DeliveryStatus.SENT}
    assert not Delivery.objects.filter(burst=burst).exclude(claim_token="").exists()


def test_pause_while_a_chunk_is_in_flight_then_resume_mails_each_address_once(
    settings, smtp_server_factory, immediate_huey, monkeypatch
):
    monkeypatch.setattr(sending, "FLUSH_EVERY", 1)
    members = make_members(6)
    burst = make_burst(members)
    server = smtp_server_factory(
        on_event=_act_on_rcpt_of("m02@example.test", lambda: services.burst_pause(burst_id=burst.pk))
    )
    point_email_settings(settings, server)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    got = statuses(burst)
    assert got["m00@example.test"] == got["m01@example.test"] == DeliveryStatus.SENT
    assert [got[f"m0{i}@example.test"] for i in (3, 4, 5)] == [DeliveryStatus.PENDING] * 3
    assert server.received_count_by_address() == {
        email: 1 for email, status in got.items() if status == DeliveryStatus.SENT
    }
    assert not pending(burst).exclude(claim_token="").exists()

    services.burst_resume(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert server.received_count_by_address() == {m.email: 1 for m in members}


def test_cancel_while_a_dead_worker_holds_deliveries_leaves_none_pending_after_recovery(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)
    sending.claim(burst_id=burst.pk, token="dead-worker", limit=2)

    services.burst_cancel(burst_id=burst.pk)
    Delivery.objects.filter(claim_token="dead-worker").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    services.deliveries_recover()

    assert set(statuses(burst).values()) == {DeliveryStatus.SKIPPED}
    assert services.burst_stats(burst_id=burst.pk).pending_count == 0


# --- finishing ----------------------------------------------------------------------------------------


def test_the_chunk_that_finishes_the_last_delivery_marks_the_burst_sent(engine):
    members = make_members(3)
    engine.script("m01@example.test", "451 4.7.1 Greylisted")
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENDING
    assert burst.finished_at is None
    assert pending(burst).count() == 1

    pending(burst).update(next_attempt_at=None)
    sending.chunk_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    last = Delivery.objects.get(burst=burst, member=members[1])
    assert burst.finished_at is not None
    assert burst.finished_at >= last.sent_at
    assert (burst.finished_at - last.sent_at) < timedelta(seconds=5)


def test_burst_finish_if_done_waits_for_every_delivery_and_for_deliveries_ready(engine):
    members = make_members(2)
    burst = sending_burst_with_pending(members)
    EmailBurst.objects.filter(pk=burst.pk).update(deliveries_ready=False)
    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT)

    # every delivery that exists is done, but more may still be created
    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENDING

    EmailBurst.objects.filter(pk=burst.pk).update(deliveries_ready=True)
    Delivery.objects.filter(burst=burst, member=members[1]).update(status=DeliveryStatus.PENDING)
    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).finished_at is None

    Delivery.objects.filter(burst=burst, member=members[1]).update(status=DeliveryStatus.FAILED)
    assert services.burst_finish_if_done(burst_id=burst.pk) is True
    finished = EmailBurst.objects.get(pk=burst.pk)
    assert finished.status == BurstStatus.SENT
    assert finished.finished_at is not None

    # only once
    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).finished_at == finished.finished_at


@pytest.mark.parametrize("status", [BurstStatus.PAUSED, BurstStatus.CANCELLED, BurstStatus.DRAFT])
def test_burst_finish_if_done_leaves_other_states_alone(engine, status):
    burst = sending_burst_with_pending(make_members(1))
    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT)
    EmailBurst.objects.filter(pk=burst.pk).update(status=status)

    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == status


# --- statistics ----------------------------------------------------------------------------------------


def _burst_with_every_status() -> EmailBurst:
    plan = [
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.NOT_FOUND,
        DeliveryStatus.FAILED,
        DeliveryStatus.CONNECTION_ERROR,
        DeliveryStatus.OTHER_ERROR,
        DeliveryStatus.PENDING,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.SKIPPED,
    ]
    members = make_members(len(plan))
    burst = sending_burst_with_pending(members)
    for member, status in zip(members, plan, strict=True):
        Delivery.objects.filter(burst=burst, member=member).update(status=status)
    return burst


def test_burst_stats_matches_the_delivery_rows_in_one_query(engine, django_assert_num_queries):
    burst = _burst_with_every_status()

    with django_assert_num_queries(1):
        stats = services.burst_stats(burst_id=burst.pk)

    rows = Counter(Delivery.objects.filter(burst=burst).values_list("status", flat=True))
    assert stats.status_counts == {s: rows.get(s, 0) for s in DeliveryStatus.values}
    assert set(stats.status_counts) == set(DeliveryStatus.values)
    assert stats.total_recipients == 10 == sum(rows.values())
    assert stats.sent_count == 3
    assert stats.failed_count == 4
    assert stats.pending_count == 1
    assert stats.skipped_count == 2
    assert stats.success_rate == 37.5  # 3 / (10 - 2)
    assert stats.status == BurstStatus.SENDING
    assert stats.email_burst_id == burst.pk


def test_burst_stats_rounds_the_success_rate_to_two_places_and_is_zero_with_nothing_to_send(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)
    Delivery.objects.filter(burst=burst, member__in=members[:1]).update(status=DeliveryStatus.SENT)
    Delivery.objects.filter(burst=burst, member__in=members[1:3]).update(status=DeliveryStatus.FAILED)
    Delivery.objects.filter(burst=burst, member__in=members[3:]).update(status=DeliveryStatus.SKIPPED)
    assert services.burst_stats(burst_id=burst.pk).success_rate == 33.33

    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SKIPPED)
    stats = services.burst_stats(burst_id=burst.pk)
    assert stats.success_rate == 0
    assert isinstance(stats.success_rate, float)

    empty = make_burst([])
    stats = services.burst_stats(burst_id=empty.pk)
    assert (stats.total_recipients, stats.success_rate) == (0, 0)


def test_burst_stats_agrees_with_the_rows_while_a_burst_is_being_sent(engine):
    members = make_members(5)
    engine.script("m01@example.test", "451 4.7.1 Greylisted")
    engine.script("m03@example.test", "550 5.1.1 Unknown")
    burst = make_burst(members)

    services.burst_send(burst_id=burst.pk)

    stats = services.burst_stats(burst_id=burst.pk)
    assert (stats.sent_count, stats.pending_count, stats.failed_count) == (3, 1, 1)
    assert stats.success_rate == 60.0
    drive(burst.pk)
    stats = services.burst_stats(burst_id=burst.pk)
    assert (stats.sent_count, stats.pending_count, stats.failed_count, stats.status) == (
        4,
        0,
        1,
        BurstStatus.SENT,
    )


def test_burst_stats_of_an_unknown_burst_is_invalid_input(engine):
    with pytest.raises(InvalidInput):
        services.burst_stats(burst_id=999_999)


# --- retry -------------------------------------------------------------------------------------------------


@pytest.fixture
def finished_with_failures(engine, settings):
    """A sent burst with one delivery in each final status."""
    settings.EMAIL_MAX_ATTEMPTS = 1
    plan = {
        "ok@example.test": (),
        "policy@example.test": ("554 5.7.1 Blocked for now",),
        "unknown@example.test": ("550 5.1.1 User unknown",),
        "flaky@example.test": ("rcpt:drop",),
    }
    members = [make_member(address) for address in plan]
    for address, script in plan.items():
        if script:
            engine.script(address, *script)
    accented = make_member("jos\u00e9@example.test", username="jose")
    burst = make_burst([*members, accented])
    services.burst_send(burst_id=burst.pk)
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert statuses(burst) == {
        "ok@example.test": DeliveryStatus.SENT,
        "policy@example.test": DeliveryStatus.FAILED,
        "unknown@example.test": DeliveryStatus.NOT_FOUND,
        "flaky@example.test": DeliveryStatus.CONNECTION_ERROR,
        "jos\u00e9@example.test": DeliveryStatus.OTHER_ERROR,
    }
    return burst


def test_burst_retry_requeues_only_the_chosen_statuses(finished_with_failures, engine):
    burst = finished_with_failures

    count = services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.FAILED])

    assert count == 1
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert statuses(burst) == {
        "ok@example.test": DeliveryStatus.SENT,
        "policy@example.test": DeliveryStatus.SENT,
        "unknown@example.test": DeliveryStatus.NOT_FOUND,
        "flaky@example.test": DeliveryStatus.CONNECTION_ERROR,
        "jos\u00e9@example.test": DeliveryStatus.OTHER_ERROR,
    }
    assert engine.received_count_by_address() == {"ok@example.test": 1, "policy@example.test": 1}
    assert engine.rcpt_attempts("flaky@example.test") == 1
    assert engine.rcpt_attempts("unknown@example.test") == 1


def test_burst_retry_of_connection_errors_sends_them(finished_with_failures, engine):
    burst = finished_with_failures

    assert services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.CONNECTION_ERROR]) == 1

    assert statuses(burst)["flaky@example.test"] == DeliveryStatus.SENT
    assert statuses(burst)["policy@example.test"] == DeliveryStatus.FAILED
    assert engine.received_count("flaky@example.test") == 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT


@pytest.mark.parametrize(
    "chosen",
    [[DeliveryStatus.NOT_FOUND], [DeliveryStatus.FAILED, DeliveryStatus.NOT_FOUND], [DeliveryStatus.SENT],
     [DeliveryStatus.SKIPPED], [DeliveryStatus.PENDING], ["bogus"]],
)  # fmt: skip
def test_burst_retry_refuses_not_found_and_statuses_that_cannot_be_retried(finished_with_failures, chosen):
    burst = finished_with_failures
    before = statuses(burst)
    row = burst_row(burst)

    with pytest.raises(InvalidInput) as caught:
        services.burst_retry(burst_id=burst.pk, statuses=chosen)

    assert caught.value.field == "statuses"
    assert statuses(burst) == before
    assert burst_row(burst) == row


def test_burst_retry_refuses_a_draft_burst(engine):
    burst = make_burst(make_members(1))
    with pytest.raises(IllegalState):
        services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.FAILED])


# --- scheduling ---------------------------------------------------------------------------------------------


def test_burst_schedule_refuses_a_time_in_the_past(engine):
    burst = make_burst(make_members(1))
    for when in (timezone.now() - timedelta(minutes=1), timezone.now()):
        with pytest.raises(InvalidInput) as caught:
            services.burst_schedule(burst_id=burst.pk, send_at=when)
        assert caught.value.field == "send_at"
    burst.refresh_from_db()
    assert burst.status == BurstStatus.DRAFT
    assert burst.scheduled_at is None


@pytest.mark.parametrize(
    "status", [BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED]
)
def test_burst_schedule_refuses_a_burst_that_has_started(engine, status):
    burst = make_burst(make_members(1))
    EmailBurst.objects.filter(pk=burst.pk).update(status=status)
    before = burst_row(burst)

    with pytest.raises(IllegalState):
        services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(hours=1))

    assert burst_row(burst) == before


def test_burst_schedule_refuses_a_naive_time(engine):
    burst = make_burst(make_members(1))
    naive = (timezone.now() + timedelta(hours=1)).replace(tzinfo=None)
    with pytest.raises(InvalidInput):
        services.burst_schedule(burst_id=burst.pk, send_at=naive)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


@pytest.mark.parametrize(
    "send_at",
    [
        "9999-12-31T23:30:00-05:00",  # year 10000 in UTC
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC
    ],
)
def test_burst_schedule_refuses_a_time_that_cannot_be_held_in_utc(engine, send_at):
    from datetime import datetime

    burst = make_burst(make_members(1))
    with pytest.raises(InvalidInput) as caught:
        services.burst_schedule(burst_id=burst.pk, send_at=datetime.fromisoformat(send_at))
    assert caught.value.field == "send_at" and "out of range" in caught.value.message
    assert EmailBurst.objects.filter(pk=burst.pk).values_list("status", "scheduled_at").get() == (
        BurstStatus.DRAFT,
        None,
    )


def test_burst_schedule_takes_at_most_five_years_ahead(engine):
    burst = make_burst(make_members(1))
    limit = services.schedule_limit(now=timezone.now())
    with pytest.raises(InvalidInput) as caught:
        services.burst_schedule(burst_id=burst.pk, send_at=limit + timedelta(minutes=1))
    assert "at most 5 years ahead" in caught.value.message and caught.value.field == "send_at"
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT

    services.burst_schedule(burst_id=burst.pk, send_at=limit - timedelta(minutes=1))
    assert EmailBurst.objects.get(pk=burst.pk).scheduled_at == limit - timedelta(minutes=1)


def test_the_schedule_limit_of_29_february_is_28_february_five_years_on():
    from datetime import UTC, datetime

    assert services.schedule_limit(now=datetime(2028, 2, 29, 12, tzinfo=UTC)) == datetime(
        2033, 2, 28, 12, tzinfo=UTC
    )
    assert services.schedule_limit(now=datetime(2027, 6, 1, tzinfo=UTC)) == datetime(2032, 6, 1, tzinfo=UTC)


# --- a scheduled burst is changed only with the send permission (SPEC section 16) ----------


@pytest.fixture
def no_send(db) -> Member:
    from django.contrib.auth.models import Permission

    user = make_member("nosend@example.test", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="campaigns").exclude(codename="send_emailburst")
    )
    return user


@pytest.fixture
def sender(db) -> Member:
    from django.contrib.auth.models import Permission

    user = make_member("sender@example.test", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="campaigns"))
    return user


def scheduled_burst() -> EmailBurst:
    burst = make_burst(make_members(1))
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(days=1))
    return burst


def test_staff_without_the_send_permission_cannot_change_or_delete_a_scheduled_burst(engine, no_send):
    burst = scheduled_burst()
    before = burst_row(burst)
    with pytest.raises(services.Forbidden) as caught:
        services.burst_update(burst_id=burst.pk, actor=no_send, all_members=True)
    assert "campaigns.send_emailburst" in caught.value.message
    with pytest.raises(services.Forbidden):
        services.burst_delete(burst_id=burst.pk, actor=no_send)
    with pytest.raises(services.Forbidden):
        services.burst_change_check(burst_id=burst.pk, actor=no_send)
    assert burst_row(burst) == before


def test_the_send_permission_changes_and_deletes_a_scheduled_burst(engine, sender):
    burst = scheduled_burst()
    services.burst_change_check(burst_id=burst.pk, actor=sender)
    services.burst_update(burst_id=burst.pk, actor=sender, subject="Changed")
    assert EmailBurst.objects.values_list("subject", "status").get(pk=burst.pk) == ("Changed", "scheduled")
    services.burst_delete(burst_id=burst.pk, actor=sender)
    assert not EmailBurst.objects.filter(pk=burst.pk).exists()


def test_a_draft_is_changed_and_deleted_without_the_send_permission(engine, no_send):
    burst = make_burst(make_members(1))
    services.burst_change_check(burst_id=burst.pk, actor=no_send)
    services.burst_update(burst_id=burst.pk, actor=no_send, subject="Changed")
    assert EmailBurst.objects.get(pk=burst.pk).subject == "Changed"
    services.burst_delete(burst_id=burst.pk, actor=no_send)
    assert not EmailBurst.objects.filter(pk=burst.pk).exists()


def test_a_started_burst_is_illegal_to_change_before_it_is_forbidden(engine, no_send):
    burst = make_burst(make_members(1))
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENT)
    with pytest.raises(IllegalState):
        services.burst_update(burst_id=burst.pk, actor=no_send, subject="Changed")


@pytest.fixture
def clock(monkeypatch):
    """Move django.utils.timezone.now forward: `clock(hours=3)`."""
    real_now = timezone.now

    def move(**delta):
        later = real_now() + timedelta(**delta)
        monkeypatch.setattr(timezone, "now", lambda: later + (real_now() - start))
        return later

    start = real_now()
    return move


def test_a_rescheduled_burst_is_not_started_by_its_old_slot(engine, clock):
    members = make_members(2)
    burst = make_burst(members)
    first_slot = timezone.now() + timedelta(hours=1)
    second_slot = timezone.now() + timedelta(hours=2)
    services.burst_schedule(burst_id=burst.pk, send_at=first_slot)
    services.burst_schedule(burst_id=burst.pk, send_at=second_slot)
    assert EmailBurst.objects.get(pk=burst.pk).scheduled_at == second_slot

    clock(hours=1, minutes=30)  # the old slot has come, the new one not yet
    assert services.burst_send_if_due(burst_id=burst.pk, slot=first_slot) is False
    assert services.burst_send_if_due(burst_id=burst.pk, slot=second_slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED

    clock(hours=3)  # both have come: still only the new slot starts it
    assert services.burst_send_if_due(burst_id=burst.pk, slot=first_slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED
    assert not Delivery.objects.filter(burst=burst).exists()
    assert engine.message_count == 0

    # the delayed task queued for the old slot is a no-op as well
    tasks.send_scheduled.call_local(burst.pk, first_slot.isoformat())
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED

    tasks.send_scheduled.call_local(burst.pk, second_slot.isoformat())
    assert services.burst_send_if_due(burst_id=burst.pk, slot=second_slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_the_dispatcher_starts_a_due_burst_exactly_once(engine, clock):
    members = make_members(3)
    burst = make_burst(members)
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(minutes=10))

    assert services.bursts_dispatch_due() == 0  # not due yet
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED

    clock(minutes=11)
    assert services.bursts_dispatch_due() == 1
    assert services.bursts_dispatch_due() == 0

    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert Delivery.objects.filter(burst=burst).count() == 3
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_a_cancelled_scheduled_burst_never_starts(engine, clock):
    burst = make_burst(make_members(2))
    slot = timezone.now() + timedelta(minutes=5)
    services.burst_schedule(burst_id=burst.pk, send_at=slot)
    services.burst_cancel(burst_id=burst.pk)

    clock(minutes=6)
    assert services.bursts_dispatch_due() == 0
    assert services.burst_send_if_due(burst_id=burst.pk, slot=slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.CANCELLED
    assert engine.message_count == 0


def test_a_scheduled_burst_can_still_be_sent_now(engine):
    members = make_members(2)
    burst = make_burst(members)
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(days=1))

    services.burst_send(burst_id=burst.pk)

    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert services.bursts_dispatch_due() == 0
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


# --- recovery ------------------------------------------------------------------------------------------------


def test_deliveries_recover_takes_back_expired_leases_and_sends_them(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)
    assert sending.claim(burst_id=burst.pk, token="dead-worker", limit=4) == 4
    # nothing is available while the lease lives
    assert sending.chunk_send(burst_id=burst.pk).claimed == 0
    Delivery.objects.filter(burst=burst).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    report = services.deliveries_recover()

    assert report["recovered"] == 4
    assert report["dispatched"] >= 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_deliveries_recover_leaves_live_leases_alone(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)
    sending.claim(burst_id=burst.pk, token="dead-worker", limit=2)
    sending.claim(burst_id=burst.pk, token="live-worker", limit=2)
    dead = list(Delivery.objects.filter(claim_token="dead-worker").values_list("pk", flat=True))
    Delivery.objects.filter(pk__in=dead).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    live = Delivery.objects.filter(claim_token="live-worker")
    assert live.count() == 2
    leases = dict(live.values_list("pk", "lease_expires_at"))

    report = services.deliveries_recover()

    assert report["recovered"] == 2
    assert not Delivery.objects.filter(pk__in=dead).exclude(claim_token="").exists()
    assert (
        dict(Delivery.objects.filter(claim_token="live-worker").values_list("pk", "lease_expires_at"))
        == leases
    )
    # the live worker is not robbed: nothing of its chunk was sent by anyone else
    assert (
        engine.received_count_by_address()
        .keys()
        .isdisjoint(Delivery.objects.filter(pk__in=leases).values_list("email", flat=True))
    )
    # the taken-back deliveries are available again, the live ones are not
    assert sending.chunk_send(burst_id=burst.pk).claimed == 2
    assert set(engine.received_count_by_address()) == set(
        Delivery.objects.filter(pk__in=dead).values_list("email", flat=True)
    )


def test_deliveries_recover_finishes_a_forgotten_burst(engine):
    burst = sending_burst_with_pending(make_members(2))
    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT)

    report = services.deliveries_recover()

    assert report["finished"] == 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT


def test_a_chunk_never_sends_a_delivery_another_worker_holds(engine):
    members = make_members(4)
    burst = sending_burst_with_pending(members)
    sending.claim(burst_id=burst.pk, token="other-worker", limit=2)

    result = sending.chunk_send(burst_id=burst.pk)

    assert result.claimed == 2
    held = set(Delivery.objects.filter(claim_token="other-worker").values_list("email", flat=True))
    assert len(held) == 2
    assert held.isdisjoint(engine.received_count_by_address())
    assert engine.message_count == 2


def test_deliveries_recover_creates_the_deliveries_of_a_burst_whose_creation_died(engine):
    members = make_members(5)
    burst = make_burst(members)
    long_ago = timezone.now() - timedelta(hours=1)
    EmailBurst.objects.filter(pk=burst.pk).update(
        status=BurstStatus.SENDING, started_at=long_ago, deliveries_ready=False, updated_at=long_ago
    )
    # the creating worker died after its first batch
    Delivery.objects.bulk_create(
        Delivery(burst=burst, member=m, email=m.email, status=DeliveryStatus.PENDING) for m in members[:2]
    )

    report = services.deliveries_recover()

    assert report["created"] == 1
    assert Delivery.objects.filter(burst=burst).count() == 5
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_deliveries_recover_leaves_a_burst_whose_deliveries_are_still_being_created(engine):
    members = make_members(3)
    burst = make_burst(members)
    EmailBurst.objects.filter(pk=burst.pk).update(
        status=BurstStatus.SENDING, started_at=timezone.now(), deliveries_ready=False
    )

    report = services.deliveries_recover()

    assert report["created"] == 0
    assert not Delivery.objects.filter(burst=burst).exists()
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENDING
    assert engine.message_count == 0
