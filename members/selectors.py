"""Read-only member queries the API and the admin share."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from members.models import ListMembership, MailingList, Member, MemberTally, Segment
from members.segments import rules_q


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


# --- mailing lists and segments -------------------------------------------------------------------------


def mailing_lists() -> QuerySet[MailingList]:
    return MailingList.objects.order_by("name", "id")


def mailing_list_member_recount() -> dict[int, int]:
    """Members on each list, counted (the triggers keep `member_count`)."""
    return dict(ListMembership.objects.order_by().values_list("mailing_list_id").annotate(n=Count("id")))


def list_members(*, list_id: int) -> QuerySet[Member]:
    """The list's members, by id."""
    return Member.objects.filter(
        Exists(ListMembership.objects.filter(mailing_list_id=list_id, member_id=OuterRef("pk")))
    ).order_by("id")


def member_lists(*, member_id: int) -> list[MailingList]:
    """The lists a member is on, by name."""
    return list(MailingList.objects.filter(memberships__member_id=member_id).order_by("name", "id"))


def segments() -> QuerySet[Segment]:
    return Segment.objects.order_by("name", "id")


def segment_members(*, rules: dict[str, Any]) -> QuerySet[Member]:
    """The members a segment's rules select, by id (evaluated by the database)."""
    return Member.objects.filter(rules_q(rules)).order_by("id")


def segment_counts(segment_list: list[Segment]) -> dict[int, int]:
    """Each segment's member count, all in one query (one pass over the members)."""
    if not segment_list:
        return {}
    totals = Member.objects.aggregate(
        **{f"s{s.pk}": Count("pk", filter=rules_q(s.rules)) for s in segment_list}
    )
    return {s.pk: totals[f"s{s.pk}"] for s in segment_list}
