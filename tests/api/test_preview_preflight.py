"""Before sending, over the API (SPEC section 11): `POST /api/email-burst/{id}/test/`,
`GET /api/email-burst/{id}/preview/` and `GET /api/email-burst/{id}/preflight/` give
what the admin's preview and pre-flight pages show."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import Delivery, EmailBurst
from devtools.smtp_sink import find_free_port
from tests.factories import BurstFactory, MemberFactory

pytestmark = pytest.mark.django_db

THREE = ["one@example.org", "two@example.org", "three@example.org"]
SECRET = "s3cret-pass-word"


def url(burst: EmailBurst | int, action: str) -> str:
    pk = burst if isinstance(burst, int) else burst.pk
    return f"/api/email-burst/{pk}/{action}/"


def fields_of(response) -> set[str]:
    return {item["field"] for item in response.json()["detail"]}


@pytest.fixture
def burst(member) -> EmailBurst:
    return BurstFactory(
        subject="Meeting, {{ member.first_name }}",
        body="Hello {{ member.first_name }}!",
        html_body="<p>Hello {{ member.first_name }}!</p>",
        recipients=[member],
    )


# --- test sends ---------------------------------------------------------------------------------


def test_a_test_answers_202_with_the_addresses_that_got_it(as_staff, smtp_settings, burst, member):
    response = as_staff.post(url(burst, "test"), {"emails": THREE, "member": member.pk})

    assert response.status_code == 202, response.content
    assert response.json() == {"sent_to": THREE, "refused": [], "member": member.pk}
    assert smtp_settings.connection_count == 1
    assert [m.subject for m in smtp_settings.messages] == ["[TEST] Meeting, Ada"] * 3
    assert len({m.header("Message-ID") for m in smtp_settings.messages}) == 3
    assert not Delivery.objects.filter(burst=burst).exists()


def test_a_test_is_rendered_for_the_caller_by_default(as_staff, smtp_settings, burst, staff_user):
    response = as_staff.post(url(burst, "test"), {"emails": THREE[:1]})

    assert response.status_code == 202
    assert response.json()["member"] == staff_user.pk
    assert smtp_settings.messages[0].subject == "[TEST] Meeting, Sam"


def test_staff_without_the_send_permission_may_test(as_staff_no_send, smtp_settings, burst):
    assert as_staff_no_send.post(url(burst, "test"), {"emails": THREE[:1]}).status_code == 202
    assert smtp_settings.message_count == 1


@pytest.mark.parametrize(
    "emails", [[], [f"reader{i}@example.org" for i in range(11)]], ids=["none", "eleven"]
)
def test_a_test_takes_one_to_ten_addresses(as_staff, smtp_settings, burst, emails):
    response = as_staff.post(url(burst, "test"), {"emails": emails})
    assert response.status_code == 422
    assert fields_of(response) == {"emails"}
    assert smtp_settings.connection_count == 0


def test_a_bad_address_or_an_unknown_member_is_a_422_naming_the_field(as_staff, smtp_settings, burst):
    bad_address = as_staff.post(url(burst, "test"), {"emails": ["one@example.org", "nope"]})
    unknown_member = as_staff.post(url(burst, "test"), {"emails": THREE, "member": 987_654})

    assert bad_address.status_code == 422 and any(f.startswith("emails") for f in fields_of(bad_address))
    assert unknown_member.status_code == 422 and fields_of(unknown_member) == {"member"}
    assert smtp_settings.connection_count == 0


def test_a_refused_address_is_reported_in_a_202(as_staff, smtp_settings, burst):
    response = as_staff.post(url(burst, "test"), {"emails": ["one@example.org", "unknown.x@example.org"]})

    assert response.status_code == 202
    body = response.json()
    assert body["sent_to"] == ["one@example.org"]
    assert [r["email"] for r in body["refused"]] == ["unknown.x@example.org"]
    assert "550" in body["refused"][0]["reason"]


def test_a_test_nobody_accepted_is_a_422(as_staff, smtp_settings, burst):
    response = as_staff.post(url(burst, "test"), {"emails": ["unknown.x@example.org"]})
    assert response.status_code == 422 and fields_of(response) == {"emails"}


def test_an_unreachable_mail_server_is_a_503_without_secrets(as_staff, settings, burst):
    port = find_free_port()
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 1
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "mailer", SECRET

    response = as_staff.post(url(burst, "test"), {"emails": THREE})

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and f"127.0.0.1:{port}" in body["message"]
    assert SECRET not in response.content.decode()


def test_a_test_of_a_broken_template_is_a_422(as_staff, smtp_settings, member):
    broken = BurstFactory(subject="Hi", body="Hello {% for x in %}", recipients=[member])
    response = as_staff.post(url(broken, "test"), {"emails": THREE})
    assert response.status_code == 422 and fields_of(response) == {"body"}
    assert smtp_settings.connection_count == 0


def test_a_test_of_an_unknown_burst_is_a_404(as_staff, smtp_settings):
    assert as_staff.post(url(987_654, "test"), {"emails": THREE}).status_code == 404


# --- preview ------------------------------------------------------------------------------------


def test_preview_renders_for_the_chosen_member(as_staff, burst):
    grace = MemberFactory(first_name="Grace")
    response = as_staff.get(url(burst, "preview"), {"member": grace.pk})

    assert response.status_code == 200, response.content
    assert response.json() == {
        "subject": "Meeting, Grace",
        "text": "Hello Grace!",
        "html": "<p>Hello Grace!</p>",
    }


def test_preview_renders_for_the_first_recipient_by_default(as_staff, burst):
    assert as_staff.get(url(burst, "preview")).json()["subject"] == "Meeting, Ada"


def test_preview_html_is_null_without_an_html_body(as_staff, member):
    plain = BurstFactory(subject="Plain", body="Only text, {{ member.first_name }}", recipients=[member])
    body = as_staff.get(url(plain, "preview")).json()
    assert body == {"subject": "Plain", "text": "Only text, Ada", "html": None}


def test_preview_for_an_unknown_member_or_a_broken_template_is_a_422(as_staff, burst, member):
    unknown = as_staff.get(url(burst, "preview"), {"member": 987_654})
    broken = BurstFactory(subject="Hi", body="Hello {% for x in %}", recipients=[member])
    failing = as_staff.get(url(broken, "preview"))

    assert unknown.status_code == 422 and fields_of(unknown) == {"member"}
    assert failing.status_code == 422 and fields_of(failing) == {"body"}


def test_preview_of_an_unknown_burst_is_a_404(as_staff):
    assert as_staff.get(url(987_654, "preview")).status_code == 404


# --- pre-flight ------------------------------------------------------------------------------------


def test_preflight_counts_who_would_be_mailed_and_why_others_are_skipped(as_staff, member):
    people = MemberFactory.create_bulk(4)
    people[0].unsubscribed_at = timezone.now()
    people[0].save()
    people[1].is_active = False
    people[1].save()
    burst = BurstFactory(subject="Hi {{ member.first_name }}", recipients=[member, *people])

    response = as_staff.get(url(burst, "preflight"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"would_mail", "skipped", "errors", "warnings", "sources", "excluded"}
    assert body["would_mail"] == 3
    assert body["sources"] == [{"source": "Members chosen one by one", "members": 5}]
    assert body["excluded"] == []
    assert sorted(body["skipped"].values()) == [1, 1]
    assert any("unsubscribed" in reason for reason in body["skipped"])
    assert any("inactive" in reason for reason in body["skipped"])
    assert body["errors"] == []
    assert isinstance(body["warnings"], list)


def test_preflight_lists_a_template_error_naming_the_field(as_staff, member):
    broken = BurstFactory(subject="Hi", body="Hello {% for x in %}", recipients=[member])

    response = as_staff.get(url(broken, "preflight"))

    assert response.status_code == 200
    errors = response.json()["errors"]
    assert errors and errors[0]["field"] == "body" and errors[0]["message"]
    assert set(errors[0]) >= {"field", "message", "line", "snippet", "count", "example"}


def test_preflight_of_an_unknown_burst_is_a_404(as_staff):
    assert as_staff.get(url(987_654, "preflight")).status_code == 404


# --- the OpenAPI schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation_id", "ok"),
    [
        ("post", "/api/email-burst/{id}/test/", "email_burst_test", "202"),
        ("get", "/api/email-burst/{id}/preview/", "email_burst_preview", "200"),
        ("get", "/api/email-burst/{id}/preflight/", "email_burst_preflight", "200"),
    ],
)
def test_the_schema_declares_the_operations_and_their_errors(anon, method, path, operation_id, ok):
    operation = anon.get("/api/openapi.json").json()["paths"][path][method]
    assert operation["operationId"] == operation_id
    assert {ok, "401", "403", "404", "422"} <= set(operation["responses"])
    if operation_id == "email_burst_test":
        assert "503" in operation["responses"]
