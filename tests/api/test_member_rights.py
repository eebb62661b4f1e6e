"""Rights over the API (issue 8 point 1): only a superuser changes the
rights or the sign-in (username, email, password, is_active) of a staff user or a
superuser, or deletes one; nobody sets their own password here."""

from __future__ import annotations

import pytest

from members.models import Member
from members.services import OWN_PASSWORD_RULE
from tests.api.conftest import Api, access_token

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Taken-over-4321"


@pytest.fixture
def colleague(db) -> Member:
    return Member.objects.create_user(
        username="cleo", email="cleo@example.test", password="cleo-pass-1234", is_staff=True
    )


def login(username: str, password: str):
    return Api().post("/api/login/", {"username": username, "password": password})


@pytest.mark.parametrize("scope", ["members", "staff"])
@pytest.mark.parametrize(
    "change, field",
    [
        ({"password": NEW_PASSWORD}, "password"),
        ({"email": "mine@example.test"}, "email"),
        ({"is_active": False}, "is_active"),
        ({"username": "not.cleo"}, "username"),
        ({"is_staff": False}, "is_staff"),
        ({"is_superuser": True}, "is_superuser"),
        ({"first_name": "C", "password": NEW_PASSWORD}, "password"),
    ],
)
def test_it_refuses_a_staff_members_change_of_another_staff_members_sign_in(
    as_staff, colleague, scope, change, field
):
    before = Member.objects.filter(pk=colleague.pk).values().get()
    response = as_staff.patch(f"/api/{scope}/{colleague.pk}/", change)
    assert response.status_code == 403, response.content
    assert "Only a superuser may change" in response.json()["detail"]
    assert field in response.json()["detail"]
    assert Member.objects.filter(pk=colleague.pk).values().get() == before  # nothing changed


def test_the_reported_takeover_no_longer_works(as_staff, colleague):
    """PATCH a colleague's password, then log in as them."""
    response = as_staff.patch(f"/api/members/{colleague.pk}/", {"password": NEW_PASSWORD})
    assert response.json() == {
        "detail": "Only a superuser may change the password of a staff user or a superuser."
    }
    assert login("cleo", NEW_PASSWORD).status_code == 401
    assert login("cleo", "cleo-pass-1234").status_code == 200


def test_a_staff_member_may_still_change_a_colleagues_names(as_staff, colleague):
    response = as_staff.patch(f"/api/staff/{colleague.pk}/", {"first_name": "Cleo", "is_verified": True})
    assert response.status_code == 200
    assert response.json()["first_name"] == "Cleo"
    # a PUT keeping the username, email and is_active changes no sign-in field
    response = as_staff.put(
        f"/api/staff/{colleague.pk}/", {"username": "cleo", "email": "cleo@example.test", "last_name": "P"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["last_name"] == "P"


def test_a_put_that_changes_a_colleagues_email_is_refused(as_staff, colleague):
    response = as_staff.put(f"/api/staff/{colleague.pk}/", {"username": "cleo", "email": "x@example.test"})
    assert response.status_code == 403
    assert "email" in response.json()["detail"]
    # omitted is_active means True: a PUT reactivating a deactivated colleague is a change too
    Member.objects.filter(pk=colleague.pk).update(is_active=False)
    response = as_staff.put(f"/api/staff/{colleague.pk}/", {"username": "cleo", "email": "cleo@example.test"})
    assert response.status_code == 403
    assert "is_active" in response.json()["detail"]
    assert not Member.objects.get(pk=colleague.pk).is_active


@pytest.mark.parametrize(
    "change",
    [{"is_superuser": True}, {"is_staff": False}, {"email": "me@example.test"}, {"is_active": False}],
)
def test_a_staff_member_cannot_raise_or_change_their_own_rights_or_sign_in(as_staff, staff_user, change):
    response = as_staff.patch(f"/api/members/{staff_user.pk}/", change)
    assert response.status_code == 403
    staff_user.refresh_from_db()
    assert not staff_user.is_superuser and staff_user.is_staff and staff_user.is_active
    assert staff_user.email == "sam.staff@example.test"


@pytest.mark.parametrize("who", ["staff_user", "superuser"])
def test_nobody_sets_their_own_password_over_the_api(who, request):
    user = request.getfixturevalue(who)
    api = Api(access_token(user))
    response = api.patch(f"/api/members/{user.pk}/", {"password": NEW_PASSWORD})
    assert response.status_code == 403
    assert response.json()["detail"] == OWN_PASSWORD_RULE
    assert "/admin/password_change/" in OWN_PASSWORD_RULE
    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    "change",
    [{"password": NEW_PASSWORD}, {"email": "evil@example.test"}, {"is_active": False}, {"first_name": "E"}],
)
def test_a_superuser_is_changed_by_superusers_only(as_staff, superuser, change):
    response = as_staff.patch(f"/api/members/{superuser.pk}/", change)
    assert response.status_code == 403
    assert response.json()["detail"] == "Only a superuser may change a superuser."
    superuser.refresh_from_db()
    assert superuser.check_password("root-pass-1234") and superuser.is_active
    assert superuser.email == "root@example.test"


def test_superusers_keep_full_power(as_root, colleague, superuser):
    path = f"/api/staff/{colleague.pk}/"
    response = as_root.patch(
        path, {"password": NEW_PASSWORD, "email": "cleo.new@example.test", "username": "cleo2"}
    )
    assert response.status_code == 200, response.content
    assert login("cleo2", NEW_PASSWORD).status_code == 200
    assert as_root.patch(path, {"is_superuser": True}).json()["is_superuser"] is True
    assert as_root.patch(path, {"is_active": False}).json()["is_active"] is False
    # a superuser changes their own email, just not their own password
    assert as_root.patch(f"/api/members/{superuser.pk}/", {"email": "boss@example.test"}).status_code == 200
    assert as_root.delete(path).status_code == 204


def test_a_plain_members_sign_in_is_any_staff_members_to_change(as_staff, member):
    """A non-staff account reaches neither the admin nor the API: no rights to take over."""
    response = as_staff.patch(
        f"/api/non-staff/{member.pk}/",
        {"password": NEW_PASSWORD, "email": "ada.l@example.test", "is_active": False},
    )
    assert response.status_code == 200, response.content
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD) and member.email == "ada.l@example.test"
    assert not member.is_active


@pytest.mark.parametrize("scope", ["members", "staff"])
def test_only_a_superuser_deletes_a_staff_user(as_staff, as_root, colleague, scope):
    response = as_staff.delete(f"/api/{scope}/{colleague.pk}/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only a superuser may delete a staff user or a superuser."
    assert Member.objects.filter(pk=colleague.pk).exists()
    assert as_root.delete(f"/api/{scope}/{colleague.pk}/").status_code == 204


def test_a_staff_member_cannot_delete_themselves_or_a_superuser(as_staff, staff_user, superuser):
    assert as_staff.delete(f"/api/members/{staff_user.pk}/").status_code == 403
    assert as_staff.delete(f"/api/members/{superuser.pk}/").status_code == 403
    assert Member.objects.filter(pk__in=[staff_user.pk, superuser.pk]).count() == 2


def test_a_staff_member_creates_only_plain_members(as_staff):
    for flags in ({"is_staff": True}, {"is_superuser": True}):
        response = as_staff.post("/api/members/", {"username": "n", "email": "n@example.test", **flags})
        assert response.status_code == 403
        assert "Only a superuser may change" in response.json()["detail"]
    response = as_staff.post(
        "/api/members/", {"username": "n", "email": "n@example.test", "password": NEW_PASSWORD}
    )
    assert response.status_code == 201 and response.json()["is_staff"] is False


def test_the_openapi_schema_states_the_rule(as_staff):
    operations = {
        operation["operationId"]: operation
        for ops in as_staff.get("/api/openapi.json").json()["paths"].values()
        for operation in ops.values()
    }
    for operation_id in ("members_update", "members_replace", "staff_update", "non_staff_replace"):
        description = operations[operation_id]["description"]
        assert "only a superuser may change the `username`" in description, operation_id
        assert "/admin/password_change/" in description
    assert "staff user or a superuser" in operations["staff_delete"]["description"]
