"""A database full of hostile strings, for the XSS tests.

Every member- or staff-supplied string that the admin or the unsubscribe pages show
carries a payload marked `data-xss`: a page that shows one unescaped has a
`<tag data-xss` in its HTML (and an element with that attribute in its DOM); one that
runs it sets `window.__xss` (or `data-ran` on the element). Each payload is a string
the application accepts from its real source: a staff member's form, an import, an
SMTP server's reply, the engine's pause reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst, MailEvent
from members.models import Member, Suppression
from tests.factories import AttachmentFactory, BurstFactory, DeliveryFactory, MemberFactory


def img(n: int) -> str:
    return f'<img data-xss src=x onerror="window.__xss={n};this.dataset.ran=1">'


def svg(n: int) -> str:
    return f'"><svg data-xss onload="window.__xss={n}">'


# `{% if 1 %}` makes the subject go through the template engine, whose output is a
# SafeString: the preview once showed it unescaped.
SUBJECT = "{% if 1 %}" + img(1) + "{% endif %}News" + svg(2)
# A filter, then a double quote: the rendered HTML once broke out of the preview
# iframe's srcdoc attribute and ran onload= in the admin page.
HTML_BODY = (
    '<p>Hi {{ member.first_name|default:"you" }}</p>" onload="window.__xss=3" data-x="'
    + img(4)
    + "<script>window.__xss=5</script>"
)
TEXT_BODY = "<script data-xss>window.__xss=6</script>Hello {{ member.first_name }} " + img(7)
FROM_NAME = svg(8)
PAUSE_REASON = "Paused after 10 failures in a row: 554 " + img(9)
SMTP_REPLY = "550 5.1.1 " + img(10) + svg(11)
FIRST_NAME = img(12)
LAST_NAME = svg(13)
# A quoted local part: valid for Django's EmailValidator (no space, no backslash).
EMAIL = '"<svg/data-xss/onload=window.__xss=14>"@example.test'
ATTACHMENT_NAME = '<img data-xss src=x onerror="window.__xss=15">.txt'
LOG_MESSAGE = "Changed " + img(16)
# A bounce as a remote server writes it: its diagnostic and the whole message are theirs.
BOUNCE_DIAGNOSTIC = "5.1.1 550 " + img(17)
BOUNCE_RAW = "Subject: Undelivered " + svg(18) + "\n\n" + img(19)
SUPPRESSION_NOTE = "Asked by phone " + img(20)

RAW = re.compile(r"<\w+[\s/]data-xss")
ESCAPED = re.compile(r"&lt;\w+[\s/]data-xss")


def raw_payloads(html: str) -> list[str]:
    """Every payload that reached the page as markup."""
    return [html[max(0, m.start() - 80) : m.end() + 40] for m in RAW.finditer(html)]


@dataclass
class World:
    victim: Member
    draft: EmailBurst
    paused: EmailBurst
    sent: EmailBurst


def hostile_world(*, author: Member) -> World:
    victim = MemberFactory(username="victim", email=EMAIL, first_name=FIRST_NAME, last_name=LAST_NAME)
    plain = MemberFactory(username="plain", email="plain@example.test", first_name="", last_name="")
    draft = BurstFactory(
        subject=SUBJECT,
        recipients=[victim, plain],
        body=TEXT_BODY,
        html_body=HTML_BODY,
        from_name=FROM_NAME,
        created_by=author,
    )
    AttachmentFactory(burst=draft, filename=ATTACHMENT_NAME, data=b"agenda")
    now = timezone.now()
    paused = BurstFactory(
        subject=SUBJECT,
        status=BurstStatus.PAUSED,
        recipients=[victim, plain],
        body=TEXT_BODY,
        pause_reason=PAUSE_REASON,
        started_at=now - timedelta(minutes=5),
    )
    sent = BurstFactory(
        subject=SUBJECT, status=BurstStatus.SENT, recipients=[victim, plain], started_at=now, finished_at=now
    )
    for burst, status in ((paused, DeliveryStatus.FAILED), (sent, DeliveryStatus.NOT_FOUND)):
        DeliveryFactory(burst=burst, member=victim, status=status, error_message=SMTP_REPLY)
        DeliveryFactory(burst=burst, member=plain, status=DeliveryStatus.SENT, sent_at=now)
        EmailBurst.objects.filter(pk=burst.pk).update(deliveries_ready=True)
    LogEntry.objects.create(
        user=author,
        content_type=ContentType.objects.get_for_model(EmailBurst),
        object_id=str(draft.pk),
        object_repr=SUBJECT,
        action_flag=CHANGE,
        change_message=LOG_MESSAGE,
    )
    bounced = Delivery.objects.get(burst=sent, member=victim)
    event = MailEvent.objects.create(
        kind="hard_bounce",
        source="imap",
        delivery=bounced,
        member=victim,
        email=EMAIL,
        diagnostic=BOUNCE_DIAGNOSTIC,
        raw=BOUNCE_RAW,
        dedup_key="xss",
        matched_by="token",
    )
    Suppression.objects.create(email=EMAIL, reason="hard_bounce", event=event, note=SUPPRESSION_NOTE)
    return World(victim=victim, draft=draft, paused=paused, sent=sent)


def admin_pages(world: World) -> dict[str, str]:
    """Every admin page that shows one of the hostile strings."""
    draft, paused, sent, victim = world.draft, world.paused, world.sent, world.victim
    bursts = "/admin/campaigns/emailburst"
    delivery = Delivery.objects.filter(burst=sent, member=victim).get()
    return {
        "dashboard": "/admin/",
        "bursts": f"{bursts}/",
        "bursts-search": f"{bursts}/?q=%3Cimg+data-xss+src%3Dx%3E",
        "draft": f"{bursts}/{draft.pk}/change/",
        "paused": f"{bursts}/{paused.pk}/change/",
        "sent": f"{bursts}/{sent.pk}/change/",
        "sent-failed-tab": f"{bursts}/{sent.pk}/change/?dstatus=not_found#deliveries",
        "preview": f"{bursts}/{draft.pk}/preview/?member={victim.pk}",
        "preview-unknown-email": f"{bursts}/{draft.pk}/preview/?email=%3Cimg+data-xss+src%3Dx%3E",
        "preflight": f"{bursts}/{draft.pk}/preflight/",
        "send": f"{bursts}/{draft.pk}/send/",
        "send-test": f"{bursts}/{draft.pk}/send-test/",
        "schedule": f"{bursts}/{draft.pk}/schedule/",
        "resume": f"{bursts}/{paused.pk}/resume/",
        "cancel": f"{bursts}/{paused.pk}/cancel/",
        "retry": f"{bursts}/{sent.pk}/retry/",
        "history": f"{bursts}/{draft.pk}/history/",
        "delete": f"{bursts}/{draft.pk}/delete/",
        "deliveries": f"/admin/campaigns/delivery/?burst__id__exact={sent.pk}",
        "delivery": f"/admin/campaigns/delivery/{delivery.pk}/change/",
        "members": "/admin/members/member/",
        "members-search": "/admin/members/member/?q=data-xss",
        "member": f"/admin/members/member/{victim.pk}/change/",
        "mail-events": "/admin/campaigns/mailevent/",
        "mail-event": f"/admin/campaigns/mailevent/{MailEvent.objects.get(dedup_key='xss').pk}/change/",
        "suppressions": "/admin/members/suppression/",
    }
