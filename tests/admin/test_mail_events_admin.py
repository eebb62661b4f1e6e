"""The admin's pages for bounces and complaints (SPEC 13): "Mail events" (list with
the kind, burst and match; a page showing the diagnostic and the raw report, escaped)
and "Suppressions" (list, search, add through the service, delete = mailable again);
the delivery page, the member timeline and the burst report show them; the sidebar
lists both pages."""

from __future__ import annotations

import pytest
from django.test import Client

from campaigns.models import DeliveryStatus, EmailBurst, MailEvent
from members.models import Suppression
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

EVENTS = "/admin/campaigns/mailevent/"
SUPPRESSIONS = "/admin/members/suppression/"
PAYLOAD = "<script>alert(1)</script>"


def event(
    delivery=None, *, kind="hard_bounce", key="k", diagnostic="5.1.1 550 User unknown", raw="raw"
) -> MailEvent:
    return MailEvent.objects.create(
        kind=kind,
        source="imap",
        delivery=delivery,
        member=delivery.member if delivery else None,
        email=delivery.email if delivery else "stranger@example.test",
        diagnostic=diagnostic,
        raw=raw,
        dedup_key=key,
        matched_by="token" if delivery else "",
    )


def test_the_events_list_shows_kind_email_burst_and_match(root_client: Client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT)
    event(delivery)
    event(kind="complaint", key="other")

    html = root_client.get(EVENTS).content.decode()

    assert "Hard bounce" in html and "Complaint" in html
    assert delivery.email in html
    assert delivery.burst.display_name in html
    assert "Delivery token" in html


def test_the_events_list_filters_by_kind(root_client: Client):
    event(key="a")
    event(kind="delayed", key="b")

    response = root_client.get(EVENTS, {"kind__exact": "delayed"})

    assert [e.kind for e in response.context["cl"].result_list] == ["delayed"]


def test_an_event_page_shows_the_diagnostic_and_the_raw_report_escaped(root_client: Client):
    shown = event(diagnostic=PAYLOAD, raw=f"Subject: {PAYLOAD}\n\nbody")

    html = root_client.get(f"{EVENTS}{shown.pk}/change/").content.decode()

    assert PAYLOAD not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<pre" in html
    assert "Not matched to a delivery" in html


def test_the_delivery_page_lists_what_was_reported_about_it(root_client: Client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT)
    event(delivery, kind="complaint", diagnostic="")

    html = root_client.get(f"/admin/campaigns/delivery/{delivery.pk}/change/").content.decode()

    assert "Reported later" in html and "Complaint" in html


def test_the_member_timeline_shows_bounces_under_the_delivery(root_client: Client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT)
    event(delivery, diagnostic="5.1.1 550 User unknown")

    html = root_client.get(f"/admin/members/member/{delivery.member_id}/change/").content.decode()
    timeline = html[html.index('id="delivery-timeline"') :]

    assert 'data-outcome="hard_bounce"' in timeline
    assert "Hard bounce: 5.1.1 550 User unknown" in timeline


def test_the_burst_report_shows_bounced_and_complained_counts(root_client: Client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT)
    EmailBurst.objects.filter(pk=delivery.burst_id).update(count_bounced=1, count_complained=1)

    html = root_client.get(f"/admin/campaigns/emailburst/{delivery.burst_id}/change/").content.decode()

    assert "Reported after sending: 1 bounced (100.0 %), 1 marked as spam (100.0 %)." in html


def test_staff_add_a_suppression_through_the_service(root_client: Client, superuser):
    response = root_client.post(f"{SUPPRESSIONS}add/", {"email": " Gone@Example.test ", "note": "by phone"})

    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.created_by_id) == (
        "gone@example.test",
        "manual",
        superuser.pk,
    )


def test_adding_an_address_already_suppressed_shows_the_error_on_the_field(root_client: Client):
    Suppression.objects.create(email="gone@example.test", reason="hard_bounce")

    response = root_client.post(f"{SUPPRESSIONS}add/", {"email": "GONE@example.test"})

    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert Suppression.objects.count() == 1


def test_the_suppressions_list_searches_by_address(root_client: Client):
    Suppression.objects.create(email="ada@example.test", reason="complaint")
    Suppression.objects.create(email="bob@example.test", reason="not_found")

    response = root_client.get(SUPPRESSIONS, {"q": "ada"})

    assert [s.email for s in response.context["cl"].result_list] == ["ada@example.test"]


def test_deleting_a_suppression_makes_the_address_mailable(root_client: Client):
    suppression = Suppression.objects.create(email="gone@example.test", reason="hard_bounce")

    response = root_client.post(f"{SUPPRESSIONS}{suppression.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Suppression.objects.exists()


def test_the_sidebar_lists_mail_events_and_suppressions(root_client: Client):
    html = root_client.get("/admin/").content.decode()

    assert EVENTS in html and SUPPRESSIONS in html


def test_the_events_list_links_to_the_upload_page(root_client: Client):
    html = root_client.get(EVENTS).content.decode()
    assert "Upload a bounce (.eml)" in html

    response = root_client.get(f"{EVENTS}upload-report/")

    assert response.status_code == 302 and response.url == "/admin/campaigns/mailevent/upload/"


def test_staff_who_may_not_upload_see_no_upload_link(client: Client, db):
    from django.contrib.auth.models import Permission

    from tests.factories import MemberFactory

    viewer = MemberFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_mailevent"))
    client.force_login(viewer)

    assert "Upload a bounce (.eml)" not in client.get(EVENTS).content.decode()
    assert client.get(f"{EVENTS}upload-report/").status_code == 403
