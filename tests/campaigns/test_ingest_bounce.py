"""`manage.py ingest_bounce FILE... | -` (reports from files or a mail server's pipe) and
the `.eml` upload in the admin."""

from __future__ import annotations

import io
from email.message import EmailMessage

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from campaigns.engine.tokens import delivery_token
from campaigns.models import DeliveryStatus, MailEvent
from members.models import Suppression
from tests.factories import DeliveryFactory, StaffFactory
from tests.imapd import dsn_message

pytestmark = pytest.mark.django_db


class _Stdin(io.StringIO):
    """What call_command's stdin looks like to the command: a text stream over bytes."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.buffer = io.BytesIO(raw)


def ingest(*args: str, stdin: bytes = b"") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_bounce", *args, stdout=out, stderr=err, stdin=_Stdin(stdin))
    return out.getvalue(), err.getvalue()


@pytest.fixture
def sent_delivery():
    return DeliveryFactory(
        status=DeliveryStatus.SENT, email="gone@example.com", member__email="gone@example.com"
    )


def _our_dsn(delivery) -> bytes:
    return dsn_message(delivery.email, message_id=f"<{delivery_token(delivery.pk)}@example.org>")


def test_a_bounce_of_our_delivery_is_recorded_matched_and_suppresses_the_address(tmp_path, sent_delivery):
    path = tmp_path / "bounce.eml"
    path.write_bytes(_our_dsn(sent_delivery))

    out, _ = ingest(str(path))

    event = MailEvent.objects.get()
    assert (event.kind, event.source, event.delivery_id, event.matched_by) == (
        "hard_bounce",
        "command",
        sent_delivery.pk,
        "token",
    )
    assert Suppression.objects.filter(email="gone@example.com", event=event).exists()
    assert f"{path}: hard bounce, 1 event(s)" in out
    assert f"gone@example.com, matched delivery {sent_delivery.pk} by its token, address suppressed" in out


def test_the_same_file_twice_is_recorded_once(tmp_path, sent_delivery):
    path = tmp_path / "bounce.eml"
    path.write_bytes(_our_dsn(sent_delivery))
    ingest(str(path))

    out, _ = ingest(str(path))

    assert MailEvent.objects.count() == 1
    assert "already recorded, nothing new" in out


def test_a_bounce_matching_only_by_address_suppresses_no_one(tmp_path, sent_delivery):
    path = tmp_path / "forged.eml"
    path.write_bytes(dsn_message("gone@example.com", message_id="<forged.token@example.org>"))

    out, _ = ingest(str(path))

    event = MailEvent.objects.get()
    assert (event.delivery_id, event.matched_by) == (None, "address")
    assert not Suppression.objects.exists()
    assert "matched by address only (no delivery; never suppresses), nothing suppressed" in out


def test_a_message_from_stdin_is_recorded_with_the_command_as_source(sent_delivery):
    out, _ = ingest("-", stdin=_our_dsn(sent_delivery))

    assert MailEvent.objects.get().source == "command"
    assert out.startswith("stdin: hard bounce")


def test_a_message_that_is_no_report_is_kept_as_unparsed(tmp_path):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.net", "b@example.org", "Hello"
    message.set_content("Not a bounce at all.")
    path = tmp_path / "hello.eml"
    path.write_bytes(message.as_bytes())

    out, _ = ingest(str(path))

    assert MailEvent.objects.get().kind == "unparsed"
    assert "unparsed" in out


def test_several_files_are_each_recorded(tmp_path, sent_delivery):
    first, second = tmp_path / "1.eml", tmp_path / "2.eml"
    first.write_bytes(_our_dsn(sent_delivery))
    second.write_bytes(dsn_message("other@example.com"))

    ingest(str(first), str(second))

    assert sorted(MailEvent.objects.values_list("email", flat=True)) == [
        "gone@example.com",
        "other@example.com",
    ]


def test_a_missing_file_is_named_and_the_others_are_still_recorded(tmp_path, sent_delivery):
    path = tmp_path / "bounce.eml"
    path.write_bytes(_our_dsn(sent_delivery))
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match="1 file"):
        call_command("ingest_bounce", str(tmp_path / "missing.eml"), str(path), stdout=out, stderr=err)

    assert "missing.eml" in err.getvalue()
    assert MailEvent.objects.count() == 1


def test_an_empty_stdin_records_nothing():
    with pytest.raises(CommandError):
        ingest("-", stdin=b"")

    assert not MailEvent.objects.exists()


# --- the .eml upload in the admin ---------------------------------------------------------

UPLOAD_URL = "/admin/campaigns/mailevent/upload/"


def _upload(client, raw: bytes, name: str = "bounce.eml"):
    return client.post(UPLOAD_URL, {"message": SimpleUploadedFile(name, raw, content_type="message/rfc822")})


def test_an_uploaded_bounce_is_recorded_and_the_page_says_what_it_matched(client, sent_delivery):
    client.force_login(StaffFactory())

    response = _upload(client, _our_dsn(sent_delivery))

    assert response.status_code == 200
    event = MailEvent.objects.get()
    assert (event.source, event.kind, event.delivery_id) == ("upload", "hard_bounce", sent_delivery.pk)
    page = response.content.decode()
    assert "gone@example.com" in page
    assert "our delivery, by its token" in page
    assert "Yes, the address is suppressed" in page


def test_the_same_report_uploaded_twice_is_recorded_once(client, sent_delivery):
    client.force_login(StaffFactory())
    _upload(client, _our_dsn(sent_delivery))

    response = _upload(client, _our_dsn(sent_delivery))

    assert MailEvent.objects.count() == 1
    assert "already recorded" in response.content.decode()


def test_a_report_given_to_the_command_and_uploaded_is_recorded_once(client, tmp_path, sent_delivery):
    path = tmp_path / "bounce.eml"
    path.write_bytes(_our_dsn(sent_delivery))
    ingest(str(path))
    client.force_login(StaffFactory())

    _upload(client, path.read_bytes())

    assert MailEvent.objects.count() == 1


def test_an_empty_upload_is_refused_with_a_message(client):
    client.force_login(StaffFactory())

    response = _upload(client, b"")

    assert response.status_code == 200
    assert not MailEvent.objects.exists()
    assert "empty" in response.content.decode()


def test_staff_without_the_permission_cannot_upload(client, sent_delivery):
    client.force_login(StaffFactory(permissions__exclude=["add_mailevent"]))

    response = _upload(client, _our_dsn(sent_delivery))

    assert response.status_code == 403
    assert not MailEvent.objects.exists()


def test_the_upload_page_sends_anonymous_visitors_to_the_login(client):
    response = client.get(UPLOAD_URL)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_upload_page_shows_its_form(client):
    client.force_login(StaffFactory())

    response = client.get(UPLOAD_URL)

    assert response.status_code == 200
    assert 'id="bounce-upload-form"' in response.content.decode()
