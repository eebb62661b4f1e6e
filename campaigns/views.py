from csp.decorators import csp_replace
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.engine.tokens import member_id_from_token
from campaigns.services import member_unsubscribe
from config.security import NO_SCRIPT
from members.models import Member


# No login and no CSRF token: mail clients POST here themselves (RFC 8058
# one-click), and the signed token is the credential.
@csrf_exempt
@csp_replace(NO_SCRIPT)
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        member_id = member_id_from_token(token)
    except signing.BadSignature:
        return render(request, "campaigns/unsubscribe_invalid.html", status=400)
    member = Member.objects.filter(pk=member_id).only("pk", "email", "unsubscribed_at").first()
    if member is None:
        return render(request, "campaigns/unsubscribe_invalid.html", status=400)
    if request.method == "GET":
        # Link scanners follow GET links: a GET only asks for confirmation.
        return render(
            request,
            "campaigns/unsubscribe_confirm.html",
            {"member": member, "already": member.unsubscribed_at is not None},
        )
    member_unsubscribe(member_id=member.pk)
    return render(request, "campaigns/unsubscribe_done.html", {"member": member})
