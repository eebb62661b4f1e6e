"""`GET /api/events/` (paginated, `?kind=`, `?burst=`), `GET, POST /api/suppressions/`
and `DELETE /api/suppressions/{id}/` (SPEC 13), and the stats' bounce and complaint
counts."""

from __future__ import annotations

import pytest

from campaigns.models import DeliveryStatus, MailEvent
from members.models import Suppression
from tests.factories import DeliveryFactory, StaffFactory

pytestmark = pytest.mark.django_db


def event(delivery=None, *, kind="hard_bounce", key: str, email="x@example.test") -> MailEvent:
    return MailEvent.objects.create(
        kind=kind,
        source="imap",
        delivery=delivery,
        member=delivery.member if delivery else None,
        email=email,
        diagnostic="550 5.1.1 User unknown",
        raw="raw",
        dedup_key=key,
        matched_by="token" if delivery else "",
    )


def test_events_are_listed_newest_first_with_their_burst(as_staff):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT)
    first = event(delivery, key="a")
    second = event(kind="unparsed", key="b", email="")

    body = as_staff.get("/api/events/").json()

    assert body["count"] == 2
    assert [e["id"] for e in body["items"]] == [second.pk, first.pk]
    item = body["items"][1]
    assert (item["kind"], item["delivery_id"], item["burst_id"], item["matched_by"]) == (
        "hard_bounce",
        delivery.pk,
        delivery.burst_id,
        "token",
    )
    assert "raw" not in item


def test_events_are_filtered_by_kind_and_by_burst(as_staff):
    one, other = DeliveryFactory(status=DeliveryStatus.SENT), DeliveryFactory(status=DeliveryStatus.SENT)
    bounce = event(one, key="a")
    complaint = event(other, kind="complaint", key="b")

    assert [e["id"] for e in as_staff.get("/api/events/", {"kind": "complaint"}).json()["items"]] == [
        complaint.pk
    ]
    assert [e["id"] for e in as_staff.get("/api/events/", {"burst": one.burst_id}).json()["items"]] == [
        bounce.pk
    ]
    assert as_staff.get("/api/events/", {"kind": "nonsense"}).status_code == 422


def test_events_are_paginated_with_a_next_link(as_staff):
    for i in range(3):
        event(key=f"k{i}")
    page = as_staff.get("/api/events/", {"limit": 2}).json()
    assert len(page["items"]) == 2 and page["count"] == 3
    rest = as_staff.get(page["next"].split("testserver", 1)[-1]).json()
    assert len(rest["items"]) == 1 and rest["next"] is None


def test_staff_suppress_an_address_lower_cased(as_staff, staff_user):
    response = as_staff.post("/api/suppressions/", {"email": "Gone@Example.test", "note": "asked by phone"})

    assert response.status_code == 201
    body = response.json()
    assert (body["email"], body["reason"], body["note"], body["created_by_id"]) == (
        "gone@example.test",
        "manual",
        "asked by phone",
        staff_user.pk,
    )


def test_suppressing_an_address_twice_is_a_conflict(as_staff):
    Suppression.objects.create(email="gone@example.test", reason="hard_bounce")

    response = as_staff.post("/api/suppressions/", {"email": "GONE@example.test"})

    assert response.status_code == 409
    assert Suppression.objects.count() == 1


def test_a_bad_address_is_refused_naming_the_field(as_staff):
    response = as_staff.post("/api/suppressions/", {"email": "not an address"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "email"
    assert not Suppression.objects.exists()


def test_suppressions_are_listed_and_searched(as_staff):
    Suppression.objects.create(email="ada@example.test", reason="complaint")
    Suppression.objects.create(email="bob@example.test", reason="not_found", created_by=StaffFactory())

    assert as_staff.get("/api/suppressions/").json()["count"] == 2
    found = as_staff.get("/api/suppressions/", {"search": "ADA"}).json()
    assert [s["email"] for s in found["items"]] == ["ada@example.test"]


def test_deleting_a_suppression_makes_the_address_mailable(as_staff):
    suppression = Suppression.objects.create(email="gone@example.test", reason="hard_bounce")

    assert as_staff.delete(f"/api/suppressions/{suppression.pk}/").status_code == 204
    assert not Suppression.objects.exists()
    assert as_staff.delete(f"/api/suppressions/{suppression.pk}/").status_code == 404


def test_stats_count_bounced_and_complained_deliveries(as_staff):
    from campaigns.models import EmailBurst

    delivery = DeliveryFactory(status=DeliveryStatus.SENT)
    EmailBurst.objects.filter(pk=delivery.burst_id).update(count_bounced=2, count_complained=1)

    body = as_staff.get(f"/api/email-burst/{delivery.burst_id}/stats/").json()

    assert (body["bounced_count"], body["complained_count"]) == (2, 1)
