"""Read-only member queries the API and the admin share."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from members.models import Member, MemberTally


def member_list(*, is_staff: bool | None = None, search: str | None = None) -> QuerySet[Member]:
    """Members ordered by id: all of them, or only staff (`is_staff=True`) or only
    non-staff (`False`); every word of `search` must match (case-insensitively) the
    username, a name or the email."""
    members = Member.objects.order_by("id")
    if is_staff is not None:
        members = members.filter(is_staff=is_staff)
    for word in (search or "").split():
        members = members.filter(
            Q(username__icontains=word)
            | Q(email__icontains=word)
            | Q(first_name__icontains=word)
            | Q(middle_name__icontains=word)
            | Q(last_name__icontains=word)
        )
    return members


def member_count(*, is_staff: bool | None = None) -> int:
    """How many members (or only staff, or only non-staff) there are, from the tally
    the database keeps: the same cost at a hundred or ten million members."""
    tally = MemberTally.objects.all() if is_staff is None else MemberTally.objects.filter(is_staff=is_staff)
    return int(tally.aggregate(n=Sum("n"))["n"] or 0)


def member_totals() -> dict[str, int]:
    """The dashboard's member figures, from the tally."""
    return MemberTally.objects.aggregate(
        members=Coalesce(Sum("n"), 0),
        subscribed=Coalesce(Sum("n", filter=Q(is_active=True, subscribed=True)), 0),
        verified=Coalesce(Sum("n", filter=Q(is_verified=True)), 0),
        staff=Coalesce(Sum("n", filter=Q(is_staff=True)), 0),
    )


def member_tally_recount() -> dict[tuple[bool, bool, bool, bool], int]:
    """Members by (is_staff, is_active, subscribed, is_verified), counted."""
    rows = (
        Member.objects.annotate(subscribed=Q(unsubscribed_at__isnull=True))
        .order_by()
        .values_list("is_staff", "is_active", "subscribed", "is_verified")
        .annotate(n=Count("id"))
    )
    return {(a, b, c, d): n for a, b, c, d, n in rows}
