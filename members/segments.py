"""Segment rules: checked when a segment is saved, and turned into one database
filter over members when it is used (never evaluated member by member in Python).

Rules are `{"match": "all" | "any", "conditions": [{"field", "op", "value"}, ...]}`
with the fields and operators of `FIELDS` (SPEC section 10). A bad rule is an
`InvalidInput` naming the condition ("condition 2: ..."), field `rules`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus, EmailBurst
from common.errors import InvalidInput
from members.models import ListMembership, MailingList

MATCHES = ("all", "any")
MAX_CONDITIONS = 50
MAX_TEXT = 254


@dataclass(frozen=True)
class FieldSpec:
    ops: tuple[str, ...]
    kind: str  # bool, date, month, text, list, burst
    label: str


TEXT_OPS = ("equals", "contains", "endswith", "empty", "not_empty")
NO_VALUE_OPS = frozenset({"empty", "not_empty"})
FIELDS: dict[str, FieldSpec] = {
    "is_verified": FieldSpec(("is",), "bool", "verified"),
    "is_staff": FieldSpec(("is",), "bool", "staff"),
    "date_joined": FieldSpec(("before", "after"), "date", "joined"),
    "birth_date": FieldSpec(("before", "after"), "date", "born"),
    "birth_month": FieldSpec(("is",), "month", "birthday month"),
    "email": FieldSpec(TEXT_OPS, "text", "email"),
    "first_name": FieldSpec(TEXT_OPS, "text", "first name"),
    "last_name": FieldSpec(TEXT_OPS, "text", "last name"),
    "list": FieldSpec(("in", "not_in"), "list", "on list"),
    "received": FieldSpec(("yes", "no"), "burst", "received burst"),
}
EXAMPLE_RULES = {"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]}


def _refuse(index: int | None, message: str) -> InvalidInput:
    where = f"condition {index + 1}: " if index is not None else ""
    return InvalidInput(f"rules: {where}{message}", field="rules")


def _value(index: int, field: str, spec: FieldSpec, op: str, value: Any) -> Any:
    """The condition's value, checked and normalised for its field and op."""
    if op in NO_VALUE_OPS:
        if value not in (None, ""):
            raise _refuse(index, f"{op} takes no value")
        return None
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _refuse(index, f"{field} {op} needs true or false, not {value!r}")
        return value
    if spec.kind == "date":
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise _refuse(index, f"{field} {op} needs a date as YYYY-MM-DD, not {value!r}") from None
    if spec.kind == "month":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
            raise _refuse(index, f"{field} {op} needs a month number from 1 to 12, not {value!r}")
        return value
    if spec.kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise _refuse(index, f"{field} {op} needs some text")
        if len(value) > MAX_TEXT:
            raise _refuse(index, f"{field} {op}: the text is longer than {MAX_TEXT} characters")
        return value.strip()
    # list and burst ids
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        what = "a list id" if spec.kind == "list" else "a burst id"
        raise _refuse(index, f"{field} {op} needs {what} (a number), not {value!r}")
    return value


def rules_clean(rules: Any) -> dict[str, Any]:
    """The rules, checked and normalised; raises InvalidInput naming the condition.
    List and burst ids must exist."""
    if not isinstance(rules, dict):
        raise _refuse(None, 'must be an object: {"match": "all" or "any", "conditions": [...]}')
    unknown = set(rules) - {"match", "conditions"}
    if unknown:
        raise _refuse(None, f"unknown key {sorted(unknown)[0]!r} (use match and conditions)")
    match = rules.get("match", "all")
    if match not in MATCHES:
        raise _refuse(None, f"match must be 'all' or 'any', not {match!r}")
    conditions = rules.get("conditions", [])
    if not isinstance(conditions, list):
        raise _refuse(None, "conditions must be a list")
    if len(conditions) > MAX_CONDITIONS:
        raise _refuse(None, f"at most {MAX_CONDITIONS} conditions")
    clean = [_condition_clean(i, c) for i, c in enumerate(conditions)]
    _ids_exist(clean, "list", MailingList, "list")
    _ids_exist(clean, "received", EmailBurst, "burst")
    return {"match": match, "conditions": clean}


def _condition_clean(index: int, condition: Any) -> dict[str, Any]:
    if not isinstance(condition, dict):
        raise _refuse(index, "must be an object with field, op and value")
    unknown = set(condition) - {"field", "op", "value"}
    if unknown:
        raise _refuse(index, f"unknown key {sorted(unknown)[0]!r} (use field, op and value)")
    field, op = condition.get("field"), condition.get("op")
    spec = FIELDS.get(field) if isinstance(field, str) else None
    if spec is None:
        raise _refuse(index, f"unknown field {field!r} (use one of {', '.join(FIELDS)})")
    if op not in spec.ops:
        raise _refuse(index, f"unknown op {op!r} for {field} (use {', '.join(spec.ops)})")
    value = _value(index, field, spec, op, condition.get("value"))
    return {"field": field, "op": op, "value": value}


def _ids_exist(conditions: list[dict[str, Any]], field: str, model: type, what: str) -> None:
    wanted = {c["value"] for c in conditions if c["field"] == field}
    if not wanted:
        return
    found = set(model.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    for index, condition in enumerate(conditions):
        if condition["field"] == field and condition["value"] not in found:
            raise _refuse(index, f"{what} {condition['value']} does not exist")


# --- evaluation -----------------------------------------------------------------------------------


def _day_start(day: str) -> dt.datetime:
    """Midnight at the start of `day` in the site's time zone (date_joined is a datetime)."""
    return timezone.make_aware(
        dt.datetime.combine(dt.date.fromisoformat(day), dt.time()), timezone.get_default_timezone()
    )


def _text_q(field: str, op: str, value: str | None) -> Q:
    if op == "empty":
        return Q(**{field: ""})
    if op == "not_empty":
        return ~Q(**{field: ""})
    lookup = {"equals": "iexact", "contains": "icontains", "endswith": "iendswith"}[op]
    return Q(**{f"{field}__{lookup}": value})


# A range of member ids, (after, end]: the batch of members being resolved, so that
# a subquery reads only its part of a million-row list.
Within = tuple[int | None, int | None]
EVERYONE: Within = (None, None)


def member_range(field: str, within: Within) -> Q:
    after, end = within
    q = Q()
    if after is not None:
        q &= Q(**{f"{field}__gt": after})
    if end is not None:
        q &= Q(**{f"{field}__lte": end})
    return q


# `id IN (SELECT …)`, not EXISTS: PostgreSQL hashes the subquery once, where an EXISTS
# inside an OR is probed member by member.
def _on_list(list_id: int, within: Within) -> Q:
    memberships = ListMembership.objects.filter(member_range("member_id", within), mailing_list_id=list_id)
    return Q(pk__in=memberships.values("member_id"))


def _received(burst_id: int, within: Within) -> Q:
    deliveries = Delivery.objects.filter(
        member_range("member_id", within), burst_id=burst_id, status=DeliveryStatus.SENT
    ).exclude(member_id=None)
    return Q(pk__in=deliveries.values("member_id"))


CONDITION_Q: dict[str, Callable[[str, Any, Within], Q]] = {
    "is_verified": lambda op, v, w: Q(is_verified=v),
    "is_staff": lambda op, v, w: Q(is_staff=v),
    "date_joined": lambda op, v, w: (
        Q(date_joined__lt=_day_start(v))
        if op == "before"
        else Q(date_joined__gte=_day_start(v) + dt.timedelta(days=1))
    ),
    "birth_date": lambda op, v, w: Q(birth_date__lt=v) if op == "before" else Q(birth_date__gt=v),
    "birth_month": lambda op, v, w: Q(birth_date__month=v),
    "email": lambda op, v, w: _text_q("email", op, v),
    "first_name": lambda op, v, w: _text_q("first_name", op, v),
    "last_name": lambda op, v, w: _text_q("last_name", op, v),
    "list": lambda op, v, w: _on_list(v, w) if op == "in" else ~_on_list(v, w),
    "received": lambda op, v, w: _received(v, w) if op == "yes" else ~_received(v, w),
}


def rules_q(rules: dict[str, Any], within: Within = EVERYONE) -> Q:
    """The members a segment's (clean) rules select, as one filter. No condition:
    every member ("all" of nothing); with "any" and no condition: nobody. With
    `within`, only right for members in that id range (the caller's filter)."""
    parts = [CONDITION_Q[c["field"]](c["op"], c["value"], within) for c in rules.get("conditions", [])]
    if rules.get("match", "all") == "any":
        if not parts:
            return Q(pk__in=[])
        combined = parts[0]
        for part in parts[1:]:
            combined |= part
        return combined
    combined = Q()
    for part in parts:
        combined &= part
    return combined


def rules_describe(rules: dict[str, Any]) -> str:
    """The rules in words, for lists and pre-flight: "verified is true and born before 1990-01-01"."""
    words = []
    for c in rules.get("conditions", []):
        spec = FIELDS.get(c.get("field"))
        label = spec.label if spec else str(c.get("field"))
        value = "" if c.get("value") is None else f" {c['value']}"
        words.append(f"{label} {str(c.get('op', '')).replace('_', ' ')}{value}".strip())
    joiner = " or " if rules.get("match") == "any" else " and "
    return joiner.join(words) or ("everyone" if rules.get("match", "all") == "all" else "nobody")
