"""One mechanism decides who is skipped for a bad address: a Suppression row on the
address (lower-cased). The engine writes one when an address is not found; staff add
and remove them; removing one, or a member changing address, makes mailing possible
again; a data migration carried over the old "last delivery was not_found" rule.

Real aiosmtpd sink, real engine, huey in immediate mode."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import selectors, services
from campaigns.models import Delivery, DeliveryStatus
from common.errors import Conflict, InvalidInput, NotFound
from members.models import Member, Suppression
from tests.campaigns.bursts import statuses
from tests.factories import DeliveryFactory, DraftBurstFactory, MemberFactory, StaffFactory

migration = importlib.import_module("members.migrations.0006_suppress_not_found_addresses")


@pytest.mark.django_db(transaction=True)
def test_the_engine_suppresses_an_address_it_found_not_to_exist(engine):
    bob = MemberFactory(email="Bob@example.test")
    ada = MemberFactory(email="ada@example.test")
    engine.script("Bob@example.test", "550 5.1.1 User unknown")
    burst = DraftBurstFactory(recipients=[bob, ada])

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst)["Bob@example.test"] == DeliveryStatus.NOT_FOUND
    assert list(Suppression.objects.values_list("email", "reason")) == [("bob@example.test", "not_found")]


@pytest.mark.django_db(transaction=True)
def test_the_engine_writes_the_suppressions_of_a_flush_in_one_statement(engine):
    lost = [MemberFactory(email=f"lost{i}@example.test") for i in range(3)]
    for member in lost:
        engine.script(member.email, "550 5.1.1 User unknown")
    burst = DraftBurstFactory(recipients=[*lost, MemberFactory(email="ok@example.test")])

    with CaptureQueriesContext(connection) as queries:
        services.burst_send(burst_id=burst.pk)

    inserts = [q["sql"] for q in queries if q["sql"].startswith('INSERT INTO "members_suppression"')]
    assert len(inserts) == 1
    assert Suppression.objects.filter(reason="not_found").count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("hard_bounce", "Skipped: suppressed (hard bounce)"),
        ("complaint", "Skipped: suppressed (complaint)"),
        ("not_found", "Skipped: suppressed (not found)"),
        ("manual", "Skipped: suppressed (added by staff)"),
    ],
)
def test_a_suppressed_address_is_skipped_with_its_reason(engine, reason, text):
    bob = MemberFactory(email="Bob@Example.test")
    Suppression.objects.create(email="bob@example.test", reason=reason)
    burst = DraftBurstFactory(recipients=[bob])

    services.burst_send(burst_id=burst.pk)

    delivery = Delivery.objects.get(burst=burst)
    assert (delivery.status, delivery.error_message) == (DeliveryStatus.SKIPPED, text)
    assert engine.received_count_by_address() == {}


@pytest.mark.django_db(transaction=True)
def test_removing_a_suppression_makes_the_address_mailable_again(engine):
    bob = MemberFactory(email="bob@example.test")
    suppression = services.suppression_add(email="bob@example.test", actor=None)
    services.suppression_remove(suppression_id=suppression.pk)
    burst = DraftBurstFactory(recipients=[bob])

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst) == {"bob@example.test": DeliveryStatus.SENT}


@pytest.mark.django_db(transaction=True)
def test_a_member_with_a_new_address_is_mailable(engine):
    bob = MemberFactory(email="bob@example.test")
    Suppression.objects.create(email="bob@example.test", reason="hard_bounce")
    Member.objects.filter(pk=bob.pk).update(email="robert@example.test")
    burst = DraftBurstFactory(recipients=[bob])

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst) == {"robert@example.test": DeliveryStatus.SENT}


@pytest.mark.django_db
def test_staff_add_a_suppression_lower_cased_with_who_added_it():
    staff = StaffFactory()
    suppression = services.suppression_add(email=" Someone@Example.ORG ", actor=staff)

    assert (suppression.email, suppression.reason, suppression.created_by_id) == (
        "someone@example.org",
        "manual",
        staff.pk,
    )


@pytest.mark.django_db
def test_it_refuses_an_address_already_suppressed_in_any_case():
    services.suppression_add(email="someone@example.org", actor=None)
    with pytest.raises(Conflict):
        services.suppression_add(email="SOMEONE@example.org", actor=None)
    assert Suppression.objects.count() == 1


@pytest.mark.django_db
def test_it_refuses_a_bad_address_or_reason():
    with pytest.raises(InvalidInput):
        services.suppression_add(email="not an address", actor=None)
    with pytest.raises(InvalidInput):
        services.suppression_add(email="a@example.org", reason="whim", actor=None)
    assert not Suppression.objects.exists()


@pytest.mark.django_db
def test_removing_an_unknown_suppression_is_not_found():
    with pytest.raises(NotFound):
        services.suppression_remove(suppression_id=12345)


@pytest.mark.django_db
def test_the_skip_reason_is_one_subquery_on_the_lower_cased_address():
    sql = str(Member.objects.annotate(why=selectors.skip_reason_expression(burst_id=1)).query).lower()
    assert sql.count("members_suppression") == 1
    assert "lower(" in sql


@pytest.mark.django_db
def test_the_migration_suppresses_addresses_whose_last_delivery_was_not_found():
    lost = MemberFactory(email="Lost@example.test")
    back = MemberFactory(email="back@example.test")
    moved = MemberFactory(email="moved@example.test")
    DeliveryFactory(member=lost, status=DeliveryStatus.NOT_FOUND)
    DeliveryFactory(member=back, status=DeliveryStatus.NOT_FOUND)
    DeliveryFactory(member=back, status=DeliveryStatus.SENT)  # found again later
    DeliveryFactory(member=moved, status=DeliveryStatus.NOT_FOUND)
    Member.objects.filter(pk=moved.pk).update(email="new@example.test")

    migration.suppress_not_found(django_apps, None)

    assert list(Suppression.objects.values_list("email", "reason")) == [("lost@example.test", "not_found")]
