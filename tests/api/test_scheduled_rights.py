"""Changing or deleting a scheduled burst needs `campaigns.send_emailburst`, as sending
does: it decides what goes out (issue 8 point 6); a draft stays open to any staff member.

The refusal comes from the auth step: a garbage body or an oversized upload from a
caller without the permission is a 403, never a 422 or a 413.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import BurstStatus, EmailAttachment, EmailBurst
from tests.api.conftest import Api, access_token
from tests.factories import BurstFactory

pytestmark = pytest.mark.django_db

ROLES = ("staff_no_send", "staff", "superuser")
GARBAGE = {"subject": 12, "recipients": "all"}
UPLOAD = object()

# method, action, body,                            nosend staff root    (on a scheduled burst)
SCHEDULED = [
    ("PUT", "", {"subject": "S", "body": "B"},       403, 200, 200),
    ("PUT", "", GARBAGE,                             403, 422, 422),
    ("PATCH", "", {"all_members": True},             403, 200, 200),
    ("PATCH", "", GARBAGE,                           403, 422, 422),
    ("DELETE", "", None,                             403, 204, 204),
    ("POST", "attachments", UPLOAD,                  403, 201, 201),
    ("POST", "attachments", GARBAGE,                 403, 422, 422),
    ("GET", "", None,                                200, 200, 200),
]  # fmt: skip


@pytest.fixture
def callers(staff_without_send, staff_user, superuser) -> dict[str, Api]:
    users = {"staff_no_send": staff_without_send, "staff": staff_user, "superuser": superuser}
    return {role: Api(access_token(user)) for role, user in users.items()}


@pytest.fixture
def bursts(member, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return {
        "scheduled": BurstFactory(recipients=[member], status=BurstStatus.SCHEDULED),
        "draft": BurstFactory(recipients=[member]),
    }


def call(api: Api, method: str, burst: EmailBurst, action: str, body):
    path = f"/api/email-burst/{burst.pk}/" + (f"{action}/" if action else "")
    if body is UPLOAD:
        return api.client.post(path, {"file": SimpleUploadedFile("a.txt", b"hello")}, headers=api.headers())
    if action == "attachments":
        return api.client.post(path, {"other": "x"}, headers=api.headers())  # multipart without a file
    return api.request(method, path, body)


def _id(row) -> str:
    method, action, body = row[:3]
    kind = "garbage" if body is GARBAGE else "upload" if body is UPLOAD else "body" if body else "no body"
    return f"{method} {action or 'item'} ({kind})"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", SCHEDULED, ids=[_id(r) for r in SCHEDULED])
def test_a_scheduled_burst_changes_only_with_the_send_permission(row, role, callers, bursts):
    method, action, body, *codes = row
    expected = dict(zip(ROLES, codes, strict=True))[role]
    burst = bursts["scheduled"]
    before = EmailBurst.objects.filter(pk=burst.pk).values().first()

    response = call(callers[role], method, burst, action, body)

    assert response.status_code == expected, (role, method, action, response.content[:300])
    if expected == 403:
        assert "campaigns.send_emailburst" in response.json()["detail"]
        assert EmailBurst.objects.filter(pk=burst.pk).values().first() == before
        assert not EmailAttachment.objects.filter(burst=burst).exists()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", SCHEDULED, ids=[_id(r) for r in SCHEDULED])
def test_a_draft_changes_without_the_send_permission(row, role, callers, bursts):
    method, action, body, *codes = row
    expected = dict(zip(ROLES, codes, strict=True))["staff"]  # what the sender gets, everyone gets
    response = call(callers[role], method, bursts["draft"], action, body)
    assert response.status_code == expected, (role, method, action, response.content[:300])


def test_an_oversized_upload_without_the_permission_is_403_before_the_body_is_read(callers, bursts, settings):
    settings.ATTACHMENT_MAX_SIZE = 10
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    path = f"/api/email-burst/{bursts['scheduled'].pk}/attachments/"
    big = {"file": SimpleUploadedFile("big.bin", b"x" * 10_000)}
    no_send, sender = callers["staff_no_send"], callers["staff"]
    assert no_send.client.post(path, big, headers=no_send.headers()).status_code == 403
    big = {"file": SimpleUploadedFile("big.bin", b"x" * 10_000)}
    assert sender.client.post(path, big, headers=sender.headers()).status_code == 413


def test_an_unknown_burst_is_still_404_for_staff_without_the_permission(callers):
    assert callers["staff_no_send"].patch("/api/email-burst/99999/", {"subject": "S"}).status_code == 404
    assert callers["staff_no_send"].delete("/api/email-burst/99999/").status_code == 404


def test_a_non_staff_member_learns_nothing_about_a_scheduled_burst(as_member, bursts):
    for burst in bursts.values():
        response = as_member.patch(f"/api/email-burst/{burst.pk}/", {"subject": "S"})
        assert response.status_code == 403 and response.json()["detail"] == "Staff access required."
