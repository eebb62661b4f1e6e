"""In the admin, as in the API: a scheduled burst is changed, deleted or given
attachments only with `campaigns.send_emailburst` (issue 8 point 6).
Without it its page is read-only, with no delete and no attachment upload; a draft
stays editable by any staff member with the change permission."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from campaigns import services
from campaigns.models import BurstStatus, EmailAttachment, EmailBurst
from tests.admin.test_bursts_admin import LIST, bulk, compose, page_url
from tests.factories import BurstFactory, MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender_client(staff_user) -> Client:
    """Staff with the send permission, not a superuser."""
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def clients(editor_client, sender_client, root_client) -> dict[str, Client]:
    return {"editor": editor_client, "sender": sender_client, "root": root_client}


@pytest.fixture
def burst(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    burst = BurstFactory(subject="Planned", recipients=MemberFactory.create_bulk(2))
    services.attachment_add(burst_id=burst.pk, uploaded_file=SimpleUploadedFile("agenda.txt", b"1"))
    return burst


def schedule(burst: EmailBurst) -> None:
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(days=1))


def edit(burst: EmailBurst, **fields) -> dict:
    attachment = EmailAttachment.objects.get(burst=burst)
    return compose(
        **{
            "attachments-TOTAL_FORMS": "2",
            "attachments-INITIAL_FORMS": "1",
            "attachments-0-id": str(attachment.pk),
            "attachments-0-burst": str(burst.pk),
            "attachments-1-file": SimpleUploadedFile("extra.txt", b"2"),
        },
        **fields,
    )


# who: (may edit and delete a scheduled burst, a draft)
EXPECTED = {"editor": (False, True), "sender": (True, True), "root": (True, True)}


@pytest.mark.parametrize("who", EXPECTED)
@pytest.mark.parametrize("state", ["scheduled", "draft"])
def test_the_burst_page_is_editable_only_with_the_right(clients, burst, who, state):
    if state == "scheduled":
        schedule(burst)
    allowed = EXPECTED[who][state == "draft"]
    client = clients[who]

    page = client.get(page_url(burst)).content.decode()
    assert ('name="subject"' in page) is allowed
    assert ('type="file"' in page) is allowed  # the attachment inline's upload
    assert (f"{page_url(burst, 'delete')}" in page) is allowed

    response = client.post(page_url(burst), edit(burst, subject="Changed"))
    assert response.status_code == (302 if allowed else 403)
    assert (EmailBurst.objects.get(pk=burst.pk).subject == "Changed") is allowed
    assert EmailAttachment.objects.filter(burst=burst).count() == (2 if allowed else 1)
    assert EmailBurst.objects.get(pk=burst.pk).status == state  # an edit keeps the schedule


@pytest.mark.parametrize("who", EXPECTED)
@pytest.mark.parametrize("state", ["scheduled", "draft"])
def test_deleting_needs_the_right(clients, burst, who, state):
    if state == "scheduled":
        schedule(burst)
    allowed = EXPECTED[who][state == "draft"]
    response = clients[who].post(page_url(burst, "delete"), {"post": "yes"})
    assert response.status_code == (302 if allowed else 403)
    assert EmailBurst.objects.filter(pk=burst.pk).exists() is not allowed


@pytest.mark.parametrize("who", EXPECTED)
def test_the_bulk_delete_keeps_a_scheduled_burst_without_the_right(clients, burst, who):
    schedule(burst)
    draft = BurstFactory(subject="Idea")
    allowed = EXPECTED[who][0]
    confirm = clients[who].post(
        LIST, {"action": "delete_selected", "_selected_action": [burst.pk, draft.pk], "index": 0}
    )
    assert ("Deleting the selected email bursts would result in deleting" in confirm.content.decode()) is (
        not allowed
    )  # Django's confirmation page lists what the account may not delete
    response = bulk(clients[who], "delete_selected", [burst, draft], post="yes")
    assert response.status_code == (200 if allowed else 403)
    assert EmailBurst.objects.filter(pk=burst.pk).exists() is not allowed
    assert EmailBurst.objects.filter(pk=draft.pk).exists() is not allowed  # all or nothing


def test_a_draft_is_still_deleted_in_bulk_by_an_editor(editor_client, burst):
    response = bulk(editor_client, "delete_selected", [burst], post="yes")
    assert response.status_code == 200
    assert not EmailBurst.objects.filter(pk=burst.pk).exists()


def test_the_burst_list_still_opens_a_scheduled_burst_for_an_editor(editor_client, burst):
    schedule(burst)
    assert editor_client.get(LIST).status_code == 200
    page = editor_client.get(page_url(burst))
    assert page.status_code == 200 and "Planned" in page.content.decode()
    assert BurstStatus.SCHEDULED == EmailBurst.objects.get(pk=burst.pk).status
