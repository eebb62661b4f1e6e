"""A template that hits a render limit is a 422 naming the field (issue 8 point 3)."""

from __future__ import annotations

import tracemalloc

import pytest

from campaigns.models import EmailBurst

pytestmark = pytest.mark.django_db

LIST_1000 = "'x'|ljust:'1000'|make_list"
NESTED = (
    f"{{% for a in {LIST_1000} %}}{{% for b in {LIST_1000} %}}{{% for c in {LIST_1000} %}}"
    "x{% endfor %}{% endfor %}{% endfor %}"
)


def fields(response) -> list[str]:
    return [item["field"] for item in response.json()["detail"]]


@pytest.mark.parametrize("field", ["subject", "body", "html_body"])
def test_a_padding_bomb_is_422_naming_the_field_without_being_built(as_staff, field):
    data = {"subject": "News", "body": "Hello", field: "{{ member.email|ljust:'200000000' }}"}
    tracemalloc.start()
    try:
        response = as_staff.post("/api/email-burst/", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 422, response.content
    assert fields(response) == [field]
    assert "ljust:200000000" in response.json()["detail"][0]["msg"]
    assert peak < 20_000_000, f"{peak:,} bytes allocated to answer"
    assert not EmailBurst.objects.exists()


@pytest.mark.parametrize(
    "body",
    [NESTED, "{% if member.first_name %}" + NESTED + "{% endif %}"],
    ids=["nested-loops", "nested-loops-for-a-member-with-a-first-name"],
)
def test_nested_loops_are_422_naming_the_loop_limit(as_staff, body):
    response = as_staff.post("/api/email-burst/", {"subject": "News", "body": body})
    assert response.status_code == 422, response.content
    assert fields(response) == ["body"]
    assert "TEMPLATE_MAX_LOOP_ITERATIONS" in response.json()["detail"][0]["msg"]


def test_changing_a_draft_to_a_template_over_a_limit_is_422(as_staff):
    created = as_staff.post("/api/email-burst/", {"subject": "News", "body": "Hello"})
    assert created.status_code == 201, created.content
    response = as_staff.patch(
        f"/api/email-burst/{created.json()['id']}/", {"html_body": "{% lorem 100000000 w %}"}
    )
    assert response.status_code == 422, response.content
    assert fields(response) == ["html_body"]
    assert EmailBurst.objects.get().html_body == ""
