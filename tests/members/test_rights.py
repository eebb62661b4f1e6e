"""The one rights rule (members.services) the admin, the API and the import apply."""

from __future__ import annotations

import pytest

from common.errors import Forbidden, NotFound
from members import services
from members.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def colleague(db) -> Member:
    return Member.objects.create_user("cleo", "cleo@example.test", is_staff=True)


@pytest.fixture
def lone_superuser(db) -> Member:
    """A superuser without is_staff is privileged all the same."""
    return Member.objects.create_user("lone", "lone@example.test", is_superuser=True)


@pytest.mark.parametrize("field", ["groups", "user_permissions", "is_staff", "is_superuser"])
@pytest.mark.parametrize("target", ["member", "staff_user", "colleague"])
def test_only_a_superuser_changes_rights_on_anyone(staff_user, superuser, target, field, request):
    member = request.getfixturevalue(target)
    with pytest.raises(Forbidden, match=f"Only a superuser may change {field}"):
        services.member_change_check(actor=staff_user, member=member, changes={field})
    services.member_change_check(actor=superuser, member=member, changes={field})


@pytest.mark.parametrize("field", ["username", "email", "password", "is_active"])
def test_only_a_superuser_changes_a_staff_users_sign_in(staff_user, colleague, member, superuser, field):
    with pytest.raises(Forbidden, match=f"the {field} of a staff user or a superuser"):
        services.member_change_check(actor=staff_user, member=colleague, changes={field})
    services.member_change_check(actor=staff_user, member=member, changes={field})
    services.member_change_check(actor=superuser, member=colleague, changes={field})


def test_names_and_subscription_of_a_colleague_are_free(staff_user, colleague):
    services.member_change_check(
        actor=staff_user, member=colleague, changes={"first_name", "is_verified", "unsubscribed_at"}
    )


def test_a_superuser_without_is_staff_is_protected(staff_user, lone_superuser):
    assert services.member_is_privileged(member=lone_superuser)
    assert not services.member_delete_allowed(actor=staff_user, member=lone_superuser)
    with pytest.raises(Forbidden, match="Only a superuser may change a superuser"):
        services.member_change_check(actor=staff_user, member=lone_superuser, changes=set())


def test_nobody_sets_their_own_password_without_the_current_one(staff_user, superuser):
    for user in (staff_user, superuser):
        with pytest.raises(Forbidden) as refused:
            services.member_change_check(actor=user, member=user, changes={"password"})
        assert refused.value.message == services.OWN_PASSWORD_RULE and refused.value.field == "password"


def test_deleting(staff_user, colleague, member, superuser):
    assert services.member_delete_allowed(actor=staff_user, member=member)
    assert not services.member_delete_allowed(actor=staff_user, member=colleague)
    assert not services.member_delete_allowed(actor=staff_user, member=superuser)
    assert services.member_delete_allowed(actor=superuser, member=colleague)
    with pytest.raises(Forbidden):
        services.member_delete(actor=staff_user, member=colleague)
    assert Member.objects.filter(pk=colleague.pk).exists()


def test_rights_are_decided_on_the_stored_member(staff_user, member):
    """The caller's copy may be stale: a member promoted meanwhile is staff for the check."""
    stale = Member.objects.get(pk=member.pk)
    Member.objects.filter(pk=member.pk).update(is_staff=True)
    with pytest.raises(Forbidden, match="the email of a staff user"):
        services.member_update(actor=staff_user, member=stale, email="mine@example.test")
    Member.objects.filter(pk=member.pk).delete()
    with pytest.raises(NotFound):
        services.member_update(actor=staff_user, member=stale, first_name="X")
