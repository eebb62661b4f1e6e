"""Read-only member queries the API and the admin share."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from members.models import Member


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
