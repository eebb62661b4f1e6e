from __future__ import annotations

import datetime
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from members.models import Member

pytestmark = pytest.mark.django_db

MIN_MEMBERS = 200


def create_sample_data(*args: str) -> str:
    out = StringIO()
    call_command("create_sample_data", "--members", str(MIN_MEMBERS), *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def sample() -> str:
    return create_sample_data()


def sent_burst_with_every_status() -> EmailBurst:
    every = {s.value for s in DeliveryStatus}
    for burst in EmailBurst.objects.filter(status=BurstStatus.SENT):
        if set(burst.deliveries.values_list("status", flat=True)) == every:
            return burst
    raise AssertionError("no sent burst has deliveries in every status")


def test_it_creates_the_requested_members_with_a_few_unsubscribed_inactive_and_unverified(sample) -> None:
    members = Member.objects.all()

    assert members.count() == MIN_MEMBERS
    assert 0 < members.filter(unsubscribed_at__isnull=False).count() < 20
    assert 0 < members.filter(is_active=False).count() < 20
    assert 0 < members.filter(is_verified=False).count() < 40
    assert not any(m.has_usable_password() for m in members)
    assert members.filter(is_superuser=True).count() == 0


def test_the_default_is_250_members() -> None:
    call_command("create_sample_data", stdout=StringIO())

    assert Member.objects.count() == 250


def test_member_names_are_realistic_and_unique(sample) -> None:
    members = list(Member.objects.all())

    assert all(m.first_name and m.last_name and m.birth_date for m in members)
    assert len({m.username for m in members}) == len(members)
    assert len({m.email.lower() for m in members}) == len(members)
    assert all(m.email.rsplit("@", 1)[1].split(".")[-2] == "example" for m in members)


def test_it_creates_draft_scheduled_paused_and_sent_bursts(sample) -> None:
    statuses = set(EmailBurst.objects.values_list("status", flat=True))

    assert {BurstStatus.DRAFT, BurstStatus.SCHEDULED, BurstStatus.PAUSED, BurstStatus.SENT} <= statuses
    scheduled = EmailBurst.objects.get(status=BurstStatus.SCHEDULED)
    assert scheduled.scheduled_at > timezone.now()
    assert all("{{ member." in b.body for b in EmailBurst.objects.all())


def test_the_paused_burst_has_a_reason_and_pending_deliveries(sample) -> None:
    paused = EmailBurst.objects.get(status=BurstStatus.PAUSED)

    assert paused.pause_reason
    assert paused.started_at is not None and paused.finished_at is None
    assert paused.deliveries.filter(status=DeliveryStatus.PENDING).exists()
    assert paused.deliveries.filter(status=DeliveryStatus.SENT).exists()


def test_a_sent_burst_has_deliveries_in_every_status(sample) -> None:
    burst = sent_burst_with_every_status()

    assert burst.started_at < burst.finished_at <= timezone.now()
    assert burst.deliveries_ready


def test_sent_bursts_are_finished(sample) -> None:
    for burst in EmailBurst.objects.filter(status=BurstStatus.SENT):
        assert burst.created_at < burst.started_at < burst.finished_at <= timezone.now()
        assert burst.deliveries.exists()


def test_attempts_are_consistent_with_each_status(sample) -> None:
    attempts = {
        status: set(Delivery.objects.filter(status=status).values_list("attempts", flat=True))
        for status in DeliveryStatus.values
    }

    assert min(attempts[DeliveryStatus.SENT]) >= 1
    assert attempts[DeliveryStatus.CONNECTION_ERROR] == {settings.EMAIL_MAX_ATTEMPTS}
    assert attempts[DeliveryStatus.NOT_FOUND] == {1}
    assert attempts[DeliveryStatus.SKIPPED] == {0}
    assert attempts[DeliveryStatus.OTHER_ERROR] == {0}
    assert attempts[DeliveryStatus.FAILED] <= {1, settings.EMAIL_MAX_ATTEMPTS}


def test_failures_carry_realistic_error_messages(sample) -> None:
    failures = Delivery.objects.filter(
        status__in=[
            DeliveryStatus.NOT_FOUND,
            DeliveryStatus.FAILED,
            DeliveryStatus.CONNECTION_ERROR,
            DeliveryStatus.OTHER_ERROR,
        ]
    )

    assert failures.exists()
    assert not failures.filter(error_message="").exists()
    for delivery in failures.filter(status=DeliveryStatus.NOT_FOUND):
        assert delivery.error_message[:5] in {"550 5", "553 5"}
    assert not Delivery.objects.filter(status=DeliveryStatus.SENT, error_message__gt="").exists()


def test_only_sent_deliveries_have_a_sent_at(sample) -> None:
    assert not Delivery.objects.filter(status=DeliveryStatus.SENT, sent_at__isnull=True).exists()
    assert not Delivery.objects.exclude(status=DeliveryStatus.SENT).filter(sent_at__isnull=False).exists()


def test_each_delivery_uses_its_members_address(sample) -> None:
    deliveries = Delivery.objects.select_related("member")

    assert deliveries.exists()
    assert all(d.email == d.member.email for d in deliveries)


def test_there_is_one_delivery_per_burst_and_member(sample) -> None:
    duplicates = Delivery.objects.values("burst", "member").annotate(n=Count("id")).filter(n__gt=1)

    assert not duplicates.exists()


def test_outcomes_are_spread_over_the_last_30_days(sample) -> None:
    now = timezone.now()
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT)

    days = {d.updated_at.date() for d in Delivery.objects.all()}
    assert len(days) >= 8
    assert all(now - datetime.timedelta(days=30) <= d.updated_at <= now for d in Delivery.objects.all())
    # updated_at is what a chart per day reads: it must be the real time, not the creation run's.
    assert all(d.updated_at == d.sent_at for d in sent)


def test_skipped_deliveries_are_for_unsubscribed_inactive_or_suppressed_members(sample) -> None:
    skipped = Delivery.objects.filter(status=DeliveryStatus.SKIPPED).select_related("member", "burst")

    assert skipped.exists()
    for delivery in skipped:
        member, started = delivery.member, delivery.burst.started_at
        unsubscribed = member.unsubscribed_at is not None and member.unsubscribed_at <= started
        suppressed = Delivery.objects.filter(
            member=member, status=DeliveryStatus.NOT_FOUND, burst__started_at__lt=started
        ).exists()
        assert not member.is_active or unsubscribed or suppressed


def test_it_does_nothing_when_sample_data_exists(sample) -> None:
    before = (Member.objects.count(), EmailBurst.objects.count(), Delivery.objects.count())

    output = create_sample_data()

    assert (Member.objects.count(), EmailBurst.objects.count(), Delivery.objects.count()) == before
    assert "already present" in output and "--force" in output


def test_force_replaces_the_sample_data_with_the_same_names(sample) -> None:
    usernames = list(Member.objects.order_by("id").values_list("username", flat=True))
    counts = (EmailBurst.objects.count(), Delivery.objects.count())

    output = create_sample_data("--force")

    assert list(Member.objects.order_by("id").values_list("username", flat=True)) == usernames
    assert (EmailBurst.objects.count(), Delivery.objects.count()) == counts
    assert "Replaced sample data" in output


def test_force_leaves_seeded_data_alone() -> None:
    call_command("seed_database", stdout=StringIO())
    create_sample_data()

    create_sample_data("--force")

    assert Member.objects.filter(username="amelia.hart").exists()
    assert Member.objects.count() == 12 + MIN_MEMBERS
    assert EmailBurst.objects.filter(subject__startswith="Invitation: spring volunteer").exists()


def test_it_refuses_fewer_than_200_members() -> None:
    with pytest.raises(CommandError, match="at least 200"):
        call_command("create_sample_data", "--members", "50", stdout=StringIO())

    assert not Member.objects.exists()


def test_the_bursts_figures_and_the_dashboards_days_match_the_sample_deliveries(sample) -> None:
    from tests.campaigns.bursts import assert_counters_exact

    assert_counters_exact()
    sent = EmailBurst.objects.filter(status=BurstStatus.SENT).first()
    assert sent.counts[DeliveryStatus.SENT] > 0


def test_it_adds_a_few_lists_and_segments_that_select_members(sample) -> None:
    from members import selectors as member_selectors
    from members.models import MailingList, Segment

    assert "3 lists, 3 segments" in sample
    lists = {m.name: m.member_count for m in MailingList.objects.all()}
    assert lists == {"Board": 7, "Volunteers": 40, "Newsletter readers": 150}
    verified = Segment.objects.get(name="Verified members")
    assert (
        member_selectors.segment_members(rules=verified.rules).count()
        == Member.objects.filter(is_verified=True).count()
    )
    create_sample_data("--force")
    assert MailingList.objects.count() == 3
    assert Segment.objects.count() == 3


def test_the_not_found_addresses_are_suppressed_so_later_bursts_skip_them(sample) -> None:
    from members.models import Suppression

    not_found = {
        email.lower()
        for email in Delivery.objects.filter(status=DeliveryStatus.NOT_FOUND).values_list("email", flat=True)
    }
    assert not_found
    assert set(Suppression.objects.values_list("email", flat=True)) == not_found
    create_sample_data("--force")
    assert set(Suppression.objects.values_list("email", flat=True)) == {
        email.lower()
        for email in Delivery.objects.filter(status=DeliveryStatus.NOT_FOUND).values_list("email", flat=True)
    }
