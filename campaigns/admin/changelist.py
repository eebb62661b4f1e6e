"""The change list of the campaigns admin: bad filter values are Django's "bad
filter" answer, never a 500."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from unfold.views import ChangeList


class CheckedChangeList(ChangeList):
    """A date filter such as 9999-12-31 23:30 in a zone west of UTC is year 10000 in
    UTC, which SQLite's adapter cannot convert when the query runs (a 500). Compiling
    the query here turns that into Django's answer to any bad filter instead: the list
    again, with `?e=1`."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: list[str] | None = None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        try:
            queryset.query.get_compiler(queryset.db).as_sql()
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc
        return queryset


class KnownCountPaginator(Paginator):
    """A paginator told the number of rows when it is known (a counter) instead of
    counting them; counts as usual otherwise."""

    def __init__(self, *args: Any, known_count: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        return self.known_count if self.known_count is not None else super().count
