import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns import services
from campaigns.models import BurstStatus, EmailAttachment, EmailBurst
from tests.factories import DraftBurstFactory, EditorFactory


@pytest.fixture
def draft(db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return DraftBurstFactory(subject="Agenda", body="See the attachment.")


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


# --- limits per burst ----------------------------------------------------------------------------


def sized(name: str, size: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"x" * size, content_type="application/octet-stream")


def stored_files(burst: EmailBurst) -> list[str]:
    from django.core.files.storage import default_storage

    folder = f"attachments/{burst.pk}"
    return sorted(default_storage.listdir(folder)[1]) if default_storage.exists(folder) else []


def test_it_refuses_more_attachments_than_attachment_max_count(draft, settings):
    settings.ATTACHMENT_MAX_COUNT = 3
    for i in range(3):
        services.attachment_add(burst_id=draft.pk, uploaded_file=sized(f"f{i}.bin", 5))
    with pytest.raises(services.InvalidInput) as caught:
        services.attachment_add(burst_id=draft.pk, uploaded_file=sized("f3.bin", 5))
    assert "at most 3 attachments" in caught.value.message and "ATTACHMENT_MAX_COUNT" in caught.value.message
    assert caught.value.field == "file"
    assert EmailAttachment.objects.filter(burst=draft).count() == 3
    assert stored_files(draft) == ["f0.bin", "f1.bin", "f2.bin"]  # the refused file was never written


def test_it_refuses_attachments_above_attachment_max_total_together(draft, settings):
    settings.ATTACHMENT_MAX_TOTAL = 25
    services.attachment_add(burst_id=draft.pk, uploaded_file=sized("a.bin", 12))
    services.attachment_add(burst_id=draft.pk, uploaded_file=sized("b.bin", 13))  # exactly 25
    with pytest.raises(services.TooLarge) as caught:
        services.attachment_add(burst_id=draft.pk, uploaded_file=sized("c.bin", 1))
    assert "25 bytes" in caught.value.message and "ATTACHMENT_MAX_TOTAL" in caught.value.message
    assert EmailAttachment.objects.filter(burst=draft).count() == 2


def test_removing_an_attachment_makes_room_again(draft, settings):
    settings.ATTACHMENT_MAX_COUNT = 1
    first = services.attachment_add(burst_id=draft.pk, uploaded_file=sized("a.bin", 1))
    with pytest.raises(services.InvalidInput):
        services.attachment_add(burst_id=draft.pk, uploaded_file=sized("b.bin", 1))
    services.attachment_delete(attachment_id=first.pk)
    services.attachment_add(burst_id=draft.pk, uploaded_file=sized("b.bin", 1))
    assert list(EmailAttachment.objects.values_list("filename", flat=True)) == ["b.bin"]


def test_the_defaults_are_20_files_and_25_mib_per_burst():
    from django.conf import settings

    assert settings.ATTACHMENT_MAX_COUNT == 20
    assert settings.ATTACHMENT_MAX_TOTAL == 25 * 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_cannot_pass_the_count_limit_together(draft, settings):
    import threading

    from django.db import connection

    settings.ATTACHMENT_MAX_COUNT = 2
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def upload_one(i: int) -> None:
        try:
            start.wait()
            services.attachment_add(burst_id=draft.pk, uploaded_file=sized(f"f{i}.bin", 3))
            outcomes.append("added")
        except services.InvalidInput:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=upload_one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] * 2 + ["refused"] * 4
    assert EmailAttachment.objects.filter(burst=draft).count() == 2


def test_a_duplicate_gets_the_attachments_of_its_original(draft, settings):
    settings.ATTACHMENT_MAX_COUNT = 2
    for name in ("a.txt", "b.txt"):
        upload(draft, name)
    copy = services.burst_duplicate(burst_id=draft.pk)
    assert list(copy.attachments.values_list("filename", "size")) == [("a.txt", 11), ("b.txt", 11)]
    with pytest.raises(services.InvalidInput):  # the copy is held to the same limits
        services.attachment_add(burst_id=copy.pk, uploaded_file=sized("c.bin", 1))


# --- a scheduled burst's attachments need the send permission ----------------------------------


@pytest.fixture
def no_send(db):
    """Staff with every campaigns permission but sending."""
    return EditorFactory(permissions__apps=["campaigns"])


def test_staff_without_the_send_permission_may_not_touch_a_scheduled_bursts_attachments(draft, no_send):
    kept = upload(draft)
    EmailBurst.objects.filter(pk=draft.pk).update(status=BurstStatus.SCHEDULED)
    with pytest.raises(services.Forbidden):
        services.attachment_add(burst_id=draft.pk, uploaded_file=sized("new.bin", 1), actor=no_send)
    with pytest.raises(services.Forbidden):
        services.attachment_delete(attachment_id=kept.pk, actor=no_send)
    assert list(EmailAttachment.objects.values_list("pk", flat=True)) == [kept.pk]


def test_staff_without_the_send_permission_may_change_a_drafts_attachments(draft, no_send):
    kept = upload(draft)
    services.attachment_add(burst_id=draft.pk, uploaded_file=sized("new.bin", 1), actor=no_send)
    services.attachment_delete(attachment_id=kept.pk, actor=no_send)
    assert list(EmailAttachment.objects.values_list("filename", flat=True)) == ["new.bin"]
