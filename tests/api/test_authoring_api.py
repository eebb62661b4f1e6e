"""Authoring checks over the API (SPEC section 11): a broken or dangerous template is
a 422 naming the field, the line and the snippet, at create, change and send; an
HTML-only burst is accepted and previewed with its generated text part."""

from __future__ import annotations

import pytest

from campaigns import selectors
from campaigns.models import BurstStatus, Delivery, EmailBurst
from tests.factories import BurstFactory, MemberFactory

pytestmark = pytest.mark.django_db

BURSTS = "/api/email-burst/"


def the_error(response) -> dict:
    assert response.status_code == 422, response.content
    [item] = response.json()["detail"]
    return item


@pytest.mark.parametrize(
    "field, source, line, snippet",
    [
        ("subject", "{{ member.first_name|default:'you' }", 1, "{{ member.first_name|default:'you' }"),
        ("body", "Hello,\n\nyour password is {{ member.password }}", 3, "{{ member.password }}"),
        ("html_body", "<p>Hi</p>\n<script>alert(1)</script>", 2, "<script>"),
        ("html_body", '<a href="jav&#x09;ascript:alert(1)">x</a>', 1, '<a href="jav&#x09;ascript:alert(1)">'),
        ("body", "Hi\n{% if member.first_name %}", 2, "{% if member.first_name %}"),
    ],
)
def test_create_answers_422_naming_field_line_and_snippet(as_staff, field, source, line, snippet):
    data = {"subject": "Hi", "body": "Hello", field: source}

    item = the_error(as_staff.post(BURSTS, data))

    assert (item["field"], item["line"], item["snippet"]) == (field, line, snippet)
    assert item["loc"] == ["body", field]
    assert item["msg"].startswith(f"{field}, line {line}, at “{snippet}”: ")
    assert not EmailBurst.objects.exists()


def test_the_variables_message_names_the_allowed_ones(as_staff):
    item = the_error(as_staff.post(BURSTS, {"subject": "Hi", "body": "{{ member.password }}"}))
    assert "member.first_name, member.middle_name, member.last_name" in item["msg"]
    assert "unsubscribe_url" in item["msg"]


def test_patch_and_put_are_checked_too(as_staff):
    burst = BurstFactory(subject="Hi", body="Hello")
    item = the_error(
        as_staff.patch(f"{BURSTS}{burst.pk}/", {"html_body": '<img src="x" onerror="alert(1)">'})
    )
    assert (item["field"], item["line"]) == ("html_body", 1)
    item = the_error(as_staff.put(f"{BURSTS}{burst.pk}/", {"subject": "Hi {{ x }", "body": "Hello"}))
    assert (item["field"], item["snippet"]) == ("subject", "{{ x }")
    assert EmailBurst.objects.get(pk=burst.pk).subject == "Hi"


def test_send_refuses_a_stored_broken_template_with_the_same_answer(as_staff):
    burst = BurstFactory(subject="Hello {{ member.first_name }", body="Hi", recipients=[MemberFactory()])

    item = the_error(as_staff.post(f"{BURSTS}{burst.pk}/send/"))

    assert (item["field"], item["line"], item["snippet"]) == ("subject", 1, "{{ member.first_name }")
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT
    assert not Delivery.objects.exists()


def test_other_422s_carry_no_line_or_snippet(as_staff):
    item = the_error(as_staff.post(BURSTS, {"subject": "Hi", "body": "Hello", "recipients": [99999]}))
    assert item["field"] == "recipients"
    assert "line" not in item and "snippet" not in item


def test_an_html_only_burst_is_created_and_previewed_with_a_generated_text(as_staff):
    member = MemberFactory(first_name="Ada")
    html = '<p>Hello {{ member.first_name }},</p><p><a href="https://example.org/agenda">the agenda</a></p>'

    response = as_staff.post(BURSTS, {"subject": "Hi", "html_body": html, "recipients": [member.pk]})

    assert response.status_code == 201, response.content
    assert response.json()["body"] == ""
    burst_id = response.json()["id"]
    preview = selectors.burst_preview(burst_id=burst_id, member_id=member.pk)
    assert "Hello Ada," in preview.text
    assert "the agenda (https://example.org/agenda)" in preview.text


@pytest.mark.parametrize("data", [{"subject": "Hi"}, {"subject": "Hi", "body": "", "html_body": ""}])
def test_without_body_and_html_body_the_answer_is_422_on_body(as_staff, data):
    item = the_error(as_staff.post(BURSTS, data))
    assert (item["field"], item["msg"]) == ("body", "body or html_body is required")


def test_the_schema_documents_line_and_snippet(as_staff):
    schema = as_staff.get("/api/openapi.json").json()
    field_error = schema["components"]["schemas"]["FieldError"]["properties"]
    assert {"line", "snippet"} <= set(field_error)
    assert "line" not in schema["components"]["schemas"]["FieldError"].get("required", [])
    burst_in = schema["components"]["schemas"]["BurstIn"]
    assert "body" not in burst_in.get("required", [])
