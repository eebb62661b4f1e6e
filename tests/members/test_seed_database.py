from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.template import Context, Template

from campaigns.models import BurstStatus, EmailBurst
from members.models import Member

pytestmark = pytest.mark.django_db

RESERVED_DOMAINS = ("example.com", "example.net", "example.org")


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_database", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def fast_hasher(settings) -> None:
    # The default PBKDF2 costs a noticeable fraction of a second per password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_it_creates_two_staff_ten_members_two_bursts_and_no_superuser() -> None:
    output = seed()

    assert Member.objects.filter(is_staff=True, is_superuser=False).count() == 2
    assert Member.objects.filter(is_staff=False).count() == 10
    assert Member.objects.filter(is_superuser=True).count() == 0
    assert EmailBurst.objects.count() == 2
    assert "Created 2 staff, 10 members, 2 bursts" in output


def test_it_adds_nothing_when_run_twice() -> None:
    seed()
    before = (
        Member.objects.count(),
        EmailBurst.objects.count(),
        EmailBurst.recipients.through.objects.count(),
    )

    output = seed()

    after = (
        Member.objects.count(),
        EmailBurst.objects.count(),
        EmailBurst.recipients.through.objects.count(),
    )
    assert after == before
    assert "Nothing to do: already seeded" in output


def test_it_leaves_an_existing_superuser_alone(superuser) -> None:
    seed()

    assert list(Member.objects.filter(is_superuser=True)) == [superuser]


def test_it_completes_a_partial_seed() -> None:
    seed()
    Member.objects.get(username="noah.kim").delete()

    output = seed()

    assert Member.objects.filter(is_staff=False).count() == 10
    assert "Created 0 staff, 1 members, 0 bursts" in output


def test_it_counts_a_member_already_holding_a_seeded_address_as_present() -> None:
    # Same address in another case under another username: the unique email
    # must not make the seed crash.
    Member.objects.create_user(username="amelia", email="Amelia.Hart@Example.com")

    seed()

    assert Member.objects.filter(email__iexact="amelia.hart@example.com").count() == 1
    assert Member.objects.filter(is_staff=False).count() == 10


def test_members_mix_verified_and_unverified_with_names_and_birth_dates() -> None:
    seed()
    members = Member.objects.filter(is_staff=False)

    assert {m.is_verified for m in members} == {True, False}
    assert all(m.first_name and m.last_name and m.birth_date for m in members)


def test_every_seeded_address_is_at_a_reserved_domain() -> None:
    seed()

    for email in Member.objects.values_list("email", flat=True):
        assert email.rsplit("@", 1)[1] in RESERVED_DOMAINS, email


def test_seeded_users_get_unusable_passwords_by_default() -> None:
    seed()

    assert not any(m.has_usable_password() for m in Member.objects.all())


def test_password_option_sets_the_staff_passwords_only(fast_hasher) -> None:
    seed("--password", "s3cret-Pass")

    staff = Member.objects.filter(is_staff=True)
    assert all(user.check_password("s3cret-Pass") for user in staff)
    assert not any(m.has_usable_password() for m in Member.objects.filter(is_staff=False))


def test_password_option_on_a_seeded_database_changes_no_password(fast_hasher) -> None:
    seed()

    output = seed("--password", "s3cret-Pass")

    assert not any(m.has_usable_password() for m in Member.objects.all())
    assert "changepassword" in output


def test_staff_can_use_the_admin() -> None:
    seed()
    editor, reader = Member.objects.filter(is_staff=True).order_by("id")

    assert editor.has_perm("campaigns.send_emailburst")
    assert editor.has_perm("campaigns.change_emailburst")
    assert reader.has_perm("campaigns.view_emailburst")
    assert not reader.has_perm("campaigns.change_emailburst")


def test_one_draft_burst_goes_to_chosen_members_and_one_to_all_with_html() -> None:
    seed()
    chosen = EmailBurst.objects.get(all_members=False)
    everyone = EmailBurst.objects.get(all_members=True)

    assert {chosen.status, everyone.status} == {BurstStatus.DRAFT}
    recipients = list(chosen.recipients.all())
    assert 0 < len(recipients) < 10
    assert not any(r.is_staff for r in recipients)
    assert everyone.html_body and not chosen.html_body
    assert everyone.recipients.count() == 0


def test_burst_bodies_render_the_member_variables() -> None:
    seed()
    member = Member.objects.get(username="amelia.hart")

    for burst in EmailBurst.objects.all():
        assert "{{ member.first_name }}" in burst.body
        rendered = Template(burst.body).render(Context({"member": member}))
        assert "Amelia" in rendered and "{{" not in rendered
