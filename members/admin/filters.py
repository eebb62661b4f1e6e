"""Filters of the members list."""

from __future__ import annotations

from typing import Any

from django.core.validators import EMPTY_VALUES
from django.db.models import QuerySet
from django.http import HttpRequest
from unfold.contrib.filters.admin import DropdownFilter, RadioFilter, RangeDateFilter
from unfold.utils import parse_date_str

from members import selectors
from members.models import Member


class SubscribedFilter(RadioFilter):
    title = "subscription"
    parameter_name = "subscribed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Subscribed"), ("no", "Unsubscribed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        if self.value() == "yes":
            return queryset.filter(unsubscribed_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(unsubscribed_at__isnull=False)
        return queryset


class JoinedDateRangeFilter(RangeDateFilter):
    """A date range on a datetime field, both ends included (days in TIME_ZONE)."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        filters = {}
        for suffix, lookup in (("_from", "__date__gte"), ("_to", "__date__lte")):
            value = self.used_parameters.get(f"{self.parameter_name}{suffix}")
            if value not in EMPTY_VALUES and isinstance(value, str):
                parsed = parse_date_str(value)
                if parsed is None:
                    return None
                filters[f"{self.parameter_name}{lookup}"] = parsed
        return queryset.filter(**filters)


class MailingListFilter(DropdownFilter):
    """Members on one mailing list (`?mailing_list=<id>`, the lists page links here)."""

    title = "mailing list"
    parameter_name = "mailing_list"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in selectors.mailing_lists().values_list("pk", "name")[:500]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> QuerySet[Member]:
        value = self.value()
        if not value:
            return queryset
        if not str(value).isdigit():
            return queryset.none()
        return queryset.filter(pk__in=selectors.list_members(list_id=int(value)).values("pk"))
