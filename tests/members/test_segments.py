"""Segment rules (issue 12 point 2): every field and op of SPEC section 10 selects
the right members in the database (run on SQLite and on PostgreSQL), and a bad
rule is refused naming its condition."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import DeliveryStatus
from common.errors import InvalidInput
from members import selectors, services
from members.models import Member
from members.segments import rules_clean, rules_describe
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db


def joined(day: str) -> dt.datetime:
    return timezone.make_aware(dt.datetime.fromisoformat(f"{day}T12:00:00"))


@pytest.fixture
def cast():
    """Five members who differ in every field a rule looks at."""
    ada = MemberFactory(
        username="ada",
        email="ada@lovelace.example.org",
        first_name="Ada",
        last_name="Lovelace",
        is_verified=True,
        birth_date=dt.date(1985, 12, 10),
        date_joined=joined("2024-03-01"),
    )
    bob = MemberFactory(
        username="bob",
        email="bob@builder.example.com",
        first_name="Bob",
        last_name="",
        is_verified=False,
        birth_date=dt.date(1999, 5, 2),
        date_joined=joined("2026-01-15"),
    )
    cy = MemberFactory(
        username="cy",
        email="cy@example.org",
        first_name="",
        last_name="Young",
        is_verified=True,
        birth_date=None,
        date_joined=joined("2026-06-30"),
    )
    dee = MemberFactory(
        username="dee",
        email="Dee.Staff@Example.ORG",
        first_name="Dee",
        last_name="Staff",
        is_staff=True,
        birth_date=dt.date(1970, 12, 31),
        date_joined=joined("2020-01-01"),
    )
    eve = MemberFactory(
        username="eve",
        email="eve@elsewhere.test",
        first_name="Eve",
        last_name="Adams",
        birth_date=dt.date(2001, 1, 1),
        date_joined=joined("2026-12-01"),
    )
    return {m.username: m for m in (ada, bob, cy, dee, eve)}


def selected(rules) -> set[str]:
    return set(selectors.segment_members(rules=rules_clean(rules)).values_list("username", flat=True))


def one(field, op, value=None) -> dict:
    condition = {"field": field, "op": op}
    if value is not None:
        condition["value"] = value
    return {"match": "all", "conditions": [condition]}


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("is_verified", "is", True, {"ada", "cy"}),
        ("is_verified", "is", False, {"bob", "dee", "eve"}),
        ("is_staff", "is", True, {"dee"}),
        ("is_staff", "is", False, {"ada", "bob", "cy", "eve"}),
        ("date_joined", "before", "2026-01-01", {"ada", "dee"}),
        ("date_joined", "after", "2026-01-15", {"cy", "eve"}),
        ("birth_date", "before", "1990-01-01", {"ada", "dee"}),
        ("birth_date", "after", "1999-05-02", {"eve"}),
        ("birth_month", "is", 12, {"ada", "dee"}),
        ("birth_month", "is", 5, {"bob"}),
        ("email", "equals", "DEE.staff@example.org", {"dee"}),
        ("email", "contains", "example.org", {"ada", "cy", "dee"}),
        ("email", "endswith", ".COM", {"bob"}),
        ("email", "empty", None, set()),
        ("email", "not_empty", None, {"ada", "bob", "cy", "dee", "eve"}),
        ("first_name", "equals", "ada", {"ada"}),
        ("first_name", "contains", "e", {"dee", "eve"}),
        ("first_name", "endswith", "b", {"bob"}),
        ("first_name", "empty", None, {"cy"}),
        ("first_name", "not_empty", None, {"ada", "bob", "dee", "eve"}),
        ("last_name", "equals", "young", {"cy"}),
        ("last_name", "contains", "a", {"ada", "dee", "eve"}),
        ("last_name", "endswith", "ff", {"dee"}),
        ("last_name", "empty", None, {"bob"}),
        ("last_name", "not_empty", None, {"ada", "cy", "dee", "eve"}),
    ],
)
def test_each_member_field_rule_selects_the_right_members(cast, field, op, value, expected):
    assert selected(one(field, op, value)) == expected


def test_list_in_and_not_in(cast):
    board = services.mailing_list_create(name="Board")
    services.list_members_add(list_id=board.pk, member_ids=[cast["ada"].pk, cast["dee"].pk])
    assert selected(one("list", "in", board.pk)) == {"ada", "dee"}
    assert selected(one("list", "not_in", board.pk)) == {"bob", "cy", "eve"}


def test_received_yes_and_no_count_only_sent_deliveries(cast):
    burst = BurstFactory(status="sent")
    DeliveryFactory.create_for(burst, [cast["ada"]], status=DeliveryStatus.SENT)
    DeliveryFactory.create_for(burst, [cast["bob"]], status=DeliveryStatus.FAILED)
    assert selected(one("received", "yes", burst.pk)) == {"ada"}
    assert selected(one("received", "no", burst.pk)) == {"bob", "cy", "dee", "eve"}


def test_match_all_and_any_combine_conditions(cast):
    conditions = [
        {"field": "is_verified", "op": "is", "value": True},
        {"field": "birth_month", "op": "is", "value": 12},
    ]
    assert selected({"match": "all", "conditions": conditions}) == {"ada"}
    assert selected({"match": "any", "conditions": conditions}) == {"ada", "cy", "dee"}


def test_no_condition_is_everyone_with_all_and_nobody_with_any(cast):
    assert selected({"match": "all", "conditions": []}) == set(
        Member.objects.values_list("username", flat=True)
    )
    assert selected({"match": "any", "conditions": []}) == set()


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ([], "must be an object"),
        ({"match": "some", "conditions": []}, "match must be 'all' or 'any'"),
        ({"conditions": {"field": "email"}}, "conditions must be a list"),
        ({"conditions": [], "extra": 1}, "unknown key 'extra'"),
        ({"conditions": ["email"]}, "condition 1: must be an object"),
        (
            {"conditions": [{"field": "password", "op": "is", "value": "x"}]},
            "condition 1: unknown field 'password'",
        ),
        (
            {"conditions": [{"field": "email", "op": "like", "value": "x"}]},
            "condition 1: unknown op 'like' for email",
        ),
        (
            {"conditions": [{"field": "is_staff", "op": "is", "value": "yes"}]},
            "condition 1: is_staff is needs true or false",
        ),
        (
            {"conditions": [{"field": "birth_date", "op": "before", "value": "10/12/1985"}]},
            "needs a date as YYYY-MM-DD",
        ),
        (
            {"conditions": [{"field": "birth_date", "op": "before", "value": "2025-02-30"}]},
            "needs a date as YYYY-MM-DD",
        ),
        ({"conditions": [{"field": "birth_month", "op": "is", "value": 13}]}, "a month number from 1 to 12"),
        (
            {"conditions": [{"field": "birth_month", "op": "is", "value": True}]},
            "a month number from 1 to 12",
        ),
        ({"conditions": [{"field": "first_name", "op": "equals", "value": ""}]}, "needs some text"),
        ({"conditions": [{"field": "first_name", "op": "empty", "value": "x"}]}, "empty takes no value"),
        ({"conditions": [{"field": "list", "op": "in", "value": "board"}]}, "needs a list id"),
        (
            {
                "conditions": [
                    {"field": "is_verified", "op": "is", "value": True},
                    {"field": "list", "op": "in", "value": 999},
                ]
            },
            "condition 2: list 999 does not exist",
        ),
        (
            {"conditions": [{"field": "received", "op": "yes", "value": 999}]},
            "condition 1: burst 999 does not exist",
        ),
        (
            {"conditions": [{"field": "email", "op": "contains", "value": "x", "extra": 1}]},
            "condition 1: unknown key 'extra'",
        ),
    ],
)
def test_a_bad_rule_is_refused_naming_the_condition(rules, words):
    with pytest.raises(InvalidInput) as refused:
        rules_clean(rules)
    assert refused.value.field == "rules"
    assert words in refused.value.message


def test_rules_read_as_words():
    rules = {
        "match": "any",
        "conditions": [
            {"field": "is_verified", "op": "is", "value": True},
            {"field": "birth_date", "op": "before", "value": "1990-01-01"},
        ],
    }
    assert rules_describe(rules) == "verified is True or born before 1990-01-01"
