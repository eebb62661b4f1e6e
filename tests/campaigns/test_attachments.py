import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns import services
from campaigns.models import BurstStatus, EmailAttachment, EmailBurst


@pytest.fixture
def draft(db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return services.burst_create(subject="Agenda", body="See the attachment.")


def upload(burst: EmailBurst, name: str = "agenda.txt") -> EmailAttachment:
    return services.attachment_add(
        burst_id=burst.pk, uploaded_file=SimpleUploadedFile(name, b"1. Welcome\n", content_type="text/plain")
    )


@pytest.mark.django_db(transaction=True)
def test_it_removes_an_attachment_and_its_file_from_a_draft(draft):
    attachment = upload(draft)
    path = attachment.file.path
    services.attachment_delete(attachment_id=attachment.pk)
    assert not EmailAttachment.objects.exists()
    import os

    assert not os.path.exists(path)


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_file_a_duplicated_burst_still_uses(draft):
    attachment = upload(draft)
    copy = services.burst_duplicate(burst_id=draft.pk)
    services.attachment_delete(attachment_id=attachment.pk)
    kept = EmailAttachment.objects.get(burst=copy)
    assert kept.file.storage.exists(kept.file.name)


def test_it_refuses_to_remove_an_attachment_of_a_started_burst(draft):
    attachment = upload(draft)
    EmailBurst.objects.filter(pk=draft.pk).update(status=BurstStatus.SENDING)
    with pytest.raises(services.IllegalState):
        services.attachment_delete(attachment_id=attachment.pk)
    assert EmailAttachment.objects.filter(pk=attachment.pk).exists()


def test_an_unknown_attachment_is_not_found(db):
    with pytest.raises(services.NotFound):
        services.attachment_delete(attachment_id=999)
