"""The preference pages: `/unsubscribe/<signed token>/`, no login (the link in every
message and in its `List-Unsubscribe` header).

- GET only asks (link scanners follow links): the preference page (the organisation,
  the lists the member is on with a way to leave each, "unsubscribe from everything"),
  or, for a member already unsubscribed, a page that says so and offers to subscribe again.
- POST with `action=leave` and `list=<id>` takes the member off one of their lists
  (CSRF-protected, like subscribing again).
- POST unsubscribes, idempotently, without a CSRF token: mail clients POST here
  themselves (RFC 8058 one-click, `List-Unsubscribe=One-Click`), and the signed token
  is the credential. The done page offers "Subscribe again".
- POST with `action=resubscribe` subscribes again. That form is CSRF-protected: a
  page elsewhere must not be able to subscribe anyone back.
"""

from __future__ import annotations

from typing import Any

from csp.decorators import csp_replace
from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from campaigns.engine.tokens import member_id_from_token
from campaigns.services import member_unsubscribe
from config.security import NO_SCRIPT
from members.models import Member
from members.selectors import member_lists
from members.services import member_list_leave, members_resubscribe

RESUBSCRIBE = "resubscribe"
LEAVE = "leave"


def page(request: HttpRequest, template: str, context: dict[str, Any] | None = None, status: int = 200):
    context = {"organisation": settings.ORGANISATION_NAME, **(context or {})}
    return render(request, f"campaigns/{template}.html", context, status=status)


@csrf_exempt
@csp_replace(NO_SCRIPT)
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        member_id = member_id_from_token(token)
    except signing.BadSignature:
        return page(request, "unsubscribe_invalid", status=400)
    member = Member.objects.filter(pk=member_id).only("pk", "email", "unsubscribed_at").first()
    if member is None:
        return page(request, "unsubscribe_invalid", status=400)
    if request.method == "GET":
        if member.unsubscribed_at:
            return page(request, "unsubscribe_done", {"member": member, "already": True})
        return preferences(request, member)
    if request.POST.get("action") == RESUBSCRIBE:
        return resubscribe(request, member)
    if request.POST.get("action") == LEAVE:
        return leave(request, member)
    member_unsubscribe(member_id=member.pk)
    return page(request, "unsubscribe_done", {"member": member})


def preferences(request: HttpRequest, member: Member, *, left: str = "") -> HttpResponse:
    lists = member_lists(member_id=member.pk)
    return page(request, "unsubscribe_confirm", {"member": member, "lists": lists, "left": left})


@csrf_protect
def leave(request: HttpRequest, member: Member) -> HttpResponse:
    """Take the member off one of their own lists (a list they are not on: nothing)."""
    mine = {str(m.pk): m.name for m in member_lists(member_id=member.pk)}
    chosen = request.POST.get("list", "")
    if chosen in mine:
        member_list_leave(member_id=member.pk, list_id=int(chosen))
    return preferences(request, member, left=mine.get(chosen, ""))


@csrf_protect
def resubscribe(request: HttpRequest, member: Member) -> HttpResponse:
    # Checked here, not by the exempt view above: a wrong or missing token is Django's 403.
    members_resubscribe(members=Member.objects.filter(pk=member.pk))
    return page(request, "unsubscribe_resubscribed", {"member": member})


# The link of test messages (campaigns.services.burst_send_test): a staff member who
# clicks it, or whose mail client posts to it (one-click), unsubscribes nobody.
@csrf_exempt
@csp_replace(NO_SCRIPT)
@require_http_methods(["GET", "POST"])
def unsubscribe_test(request: HttpRequest) -> HttpResponse:
    return page(request, "unsubscribe_test")
