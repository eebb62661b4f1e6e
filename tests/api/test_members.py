"""Members, staff and non-staff endpoints (issue 4 point 3)."""

from __future__ import annotations

import pytest

from campaigns.models import Delivery, DeliveryStatus
from members.models import Member
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "username",
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "birth_date",
    "is_verified",
    "is_staff",
    "is_superuser",
    "is_active",
    "date_joined",
    "unsubscribed_at",
}


def new_member(**extra):
    data = {"username": "grace", "email": "grace@example.test"}
    data.update(extra)
    return data


# --- create --------------------------------------------------------------------------------


def test_create_answers_201_with_the_member_and_hashes_the_password(as_staff):
    response = as_staff.post(
        "/api/members/",
        new_member(
            password="Correct-Horse-42", first_name="Grace", last_name="Hopper", birth_date="1906-12-09"
        ),
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == FIELDS
    assert body["first_name"] == "Grace" and body["birth_date"] == "1906-12-09"
    assert body["is_staff"] is False and body["is_active"] is True and body["unsubscribed_at"] is None
    member = Member.objects.get(pk=body["id"])
    assert member.password.startswith(("pbkdf2", "md5", "argon2", "bcrypt"))
    assert "Correct-Horse-42" not in member.password
    assert member.check_password("Correct-Horse-42")
    assert "password" not in response.content.decode()


def test_create_without_password_gives_an_unusable_one(as_staff):
    body = as_staff.post("/api/members/", new_member()).json()
    assert not Member.objects.get(pk=body["id"]).has_usable_password()


def test_create_requires_username_and_email(as_staff):
    response = as_staff.post("/api/members/", {"first_name": "x"})
    assert response.status_code == 422
    assert {"username", "email"} <= {item["field"] for item in response.json()["detail"]}


@pytest.mark.parametrize("email", ["not-an-address", "a@b", "x@@example.test", "a b@example.test", ""])
def test_invalid_emails_are_422(as_staff, email):
    response = as_staff.post("/api/members/", new_member(email=email))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "email"


@pytest.mark.parametrize("email", ["demo@example.test", "root@localhost", "x@mail.local"])
def test_reserved_domains_are_accepted(as_staff, email):
    """Django's EmailValidator, not pydantic's EmailStr."""
    assert as_staff.post("/api/members/", new_member(email=email)).status_code == 201


def test_duplicate_email_is_409_case_insensitively(as_staff, member):
    response = as_staff.post("/api/members/", new_member(email="ADA@Example.TEST"))
    assert response.status_code == 409
    assert "email" in response.json()["detail"]


def test_duplicate_username_is_409(as_staff, member):
    assert as_staff.post("/api/members/", new_member(username="ada")).status_code == 409


def test_weak_password_is_422_with_the_reason(as_staff):
    response = as_staff.post("/api/members/", new_member(password="123"))
    assert response.status_code == 422
    item = response.json()["detail"][0]
    assert item["field"] == "password" and "short" in item["msg"]


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"birth_date": "not a date"}, "birth_date"),
        ({"birth_date": 0}, "birth_date"),
        ({"is_verified": 1}, "is_verified"),
        ({"is_active": "yes"}, "is_active"),
        ({"first_name": "a\nb"}, "first_name"),
        ({"first_name": "nul\x00"}, "first_name"),
        ({"first_name": "x" * 151}, "first_name"),
        ({"username": "has space"}, "username"),
        ({"username": ""}, "username"),
        ({"email": 5}, "email"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(as_staff, extra, field):
    response = as_staff.post("/api/members/", new_member(**extra))
    assert response.status_code == 422, response.content
    assert field in [item["field"] for item in response.json()["detail"]]


def test_only_a_superuser_may_create_staff(as_staff, as_root):
    assert as_staff.post("/api/members/", new_member(is_staff=True)).status_code == 403
    assert as_staff.post("/api/members/", new_member(is_superuser=True)).status_code == 403
    assert not Member.objects.filter(username="grace").exists()
    # sending the default is no change
    assert as_staff.post("/api/members/", new_member(is_staff=False)).status_code == 201
    response = as_root.post(
        "/api/members/", new_member(username="boss", email="boss@example.test", is_staff=True)
    )
    assert response.status_code == 201 and response.json()["is_staff"] is True


# --- list ----------------------------------------------------------------------------------


def test_list_is_paginated_and_ordered_by_id(as_staff):
    made = [MemberFactory() for _ in range(7)]
    response = as_staff.get("/api/members/", {"limit": 3, "offset": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == Member.objects.count()
    ids = [item["id"] for item in body["items"]]
    all_ids = list(Member.objects.order_by("id").values_list("id", flat=True))
    assert ids == all_ids[2:5]
    assert set(body["items"][0]) == FIELDS
    assert made


def test_limit_is_capped_at_500(as_staff):
    Member.objects.bulk_create(
        [Member(username=f"bulk{i}", email=f"bulk{i}@example.test") for i in range(510)]
    )
    body = as_staff.get("/api/members/", {"limit": 1000}).json()
    assert len(body["items"]) == 500 and body["count"] == 511
    assert as_staff.get("/api/members/").json()["items"].__len__() == 100


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "x"}, {"offset": -1}, {"offset": 2**40}])
def test_bad_pagination_is_422(as_staff, params):
    response = as_staff.get("/api/members/", params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] in params


def test_search_matches_names_and_email(as_staff):
    MemberFactory(username="u1", email="marie@curie.test", first_name="Marie", last_name="Curie")
    MemberFactory(
        username="u2", email="pierre@curie.test", first_name="Pierre", middle_name="X", last_name="Curie"
    )
    MemberFactory(username="u3", email="someone@else.test", first_name="Lise", last_name="Meitner")

    def names(search):
        return sorted(
            m["username"] for m in as_staff.get("/api/members/", {"search": search}).json()["items"]
        )

    assert names("curie") == ["u1", "u2"]
    assert names("MARIE") == ["u1"]
    assert names("else.test") == ["u3"]
    assert names("pierre curie") == ["u2"]
    assert names("%") == []
    assert as_staff.get("/api/members/", {"search": "a\x00b"}).status_code == 422


def test_staff_and_non_staff_lists(as_staff, staff_user, member, superuser):
    staff = as_staff.get("/api/staff/").json()
    non_staff = as_staff.get("/api/non-staff/").json()
    assert {m["username"] for m in staff["items"]} == {"sam.staff", "root"}
    assert {m["username"] for m in non_staff["items"]} == {"ada"}
    assert staff["count"] == 2 and non_staff["count"] == 1


# --- one member ------------------------------------------------------------------------------


def test_get_one_and_scopes(as_staff, staff_user, member):
    assert as_staff.get(f"/api/members/{member.pk}/").json()["username"] == "ada"
    assert as_staff.get(f"/api/non-staff/{member.pk}/").status_code == 200
    assert as_staff.get(f"/api/staff/{member.pk}/").status_code == 404
    assert as_staff.get(f"/api/staff/{staff_user.pk}/").status_code == 200
    assert as_staff.get(f"/api/non-staff/{staff_user.pk}/").status_code == 404
    assert as_staff.get("/api/members/999999/").status_code == 404
    assert as_staff.get("/api/members/abc/").status_code == 404
    assert as_staff.get(f"/api/members/{2**70}/").status_code == 404
    # the scope applies to every method
    assert as_staff.patch(f"/api/staff/{member.pk}/", {"first_name": "x"}).status_code == 404
    assert as_staff.delete(f"/api/non-staff/{staff_user.pk}/").status_code == 404


def test_put_replaces_resetting_omitted_fields_but_not_privileges(as_root):
    target = MemberFactory(
        first_name="A",
        middle_name="B",
        last_name="C",
        is_verified=True,
        is_staff=True,
        password="Pass-word-123",
    )
    response = as_root.put(f"/api/members/{target.pk}/", {"username": "renamed", "email": "new@example.test"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["username"] == "renamed" and body["email"] == "new@example.test"
    assert body["first_name"] == body["middle_name"] == body["last_name"] == ""
    assert body["is_verified"] is False and body["birth_date"] is None and body["is_active"] is True
    assert body["is_staff"] is True  # kept when omitted
    target.refresh_from_db()
    assert target.check_password("Pass-word-123")  # password unchanged when omitted


def test_put_requires_username_and_email(as_staff, member):
    response = as_staff.put(f"/api/members/{member.pk}/", {"first_name": "x"})
    assert response.status_code == 422


def test_patch_changes_only_what_is_sent(as_staff, member):
    response = as_staff.patch(f"/api/members/{member.pk}/", {"middle_name": "King"})
    assert response.status_code == 200
    body = response.json()
    assert body["middle_name"] == "King" and body["first_name"] == "Ada" and body["last_name"] == "Lovelace"
    assert as_staff.patch(f"/api/members/{member.pk}/", {}).status_code == 200
    assert as_staff.patch(f"/api/members/{member.pk}/", {"birth_date": "1815-12-10"}).json()[
        "birth_date"
    ] == ("1815-12-10")
    assert as_staff.patch(f"/api/members/{member.pk}/", {"birth_date": None}).json()["birth_date"] is None
    assert as_staff.patch(f"/api/members/{member.pk}/", {"email": None}).status_code == 422


def test_patch_password_is_hashed(as_staff, member):
    assert as_staff.patch(f"/api/members/{member.pk}/", {"password": "Another-pass-987"}).status_code == 200
    member.refresh_from_db()
    assert member.check_password("Another-pass-987")


def test_changing_to_a_taken_email_is_409(as_staff, member):
    other = MemberFactory(email="other@example.test")
    assert as_staff.patch(f"/api/members/{other.pk}/", {"email": "Ada@example.test"}).status_code == 409
    # its own address in another case is fine
    assert as_staff.patch(f"/api/members/{member.pk}/", {"email": "ADA@example.test"}).status_code == 200


def test_only_a_superuser_may_change_privileges(as_staff, as_root, member, staff_user):
    for change in ({"is_staff": True}, {"is_superuser": True}):
        response = as_staff.patch(f"/api/members/{member.pk}/", change)
        assert response.status_code == 403, change
    member.refresh_from_db()
    assert not member.is_staff and not member.is_superuser
    # sending the current value is no change
    assert (
        as_staff.patch(f"/api/members/{member.pk}/", {"is_staff": False, "first_name": "A"}).status_code
        == 200
    )
    assert (
        as_staff.put(
            f"/api/members/{member.pk}/", {"username": "ada", "email": "ada@example.test", "is_staff": False}
        )
    ).status_code == 200
    # demoting another staff user is a change too
    assert as_staff.patch(f"/api/staff/{staff_user.pk}/", {"is_staff": False}).status_code == 403
    # a superuser may
    assert as_root.patch(f"/api/members/{member.pk}/", {"is_staff": True}).json()["is_staff"] is True


def test_only_a_superuser_may_change_or_delete_a_superuser(as_staff, as_root, superuser):
    path = f"/api/members/{superuser.pk}/"
    assert as_staff.get(path).status_code == 200
    assert as_staff.patch(path, {"first_name": "Evil"}).status_code == 403
    assert as_staff.patch(path, {"password": "Taken-over-123"}).status_code == 403
    assert as_staff.put(path, {"username": "root", "email": "root@example.test"}).status_code == 403
    assert as_staff.delete(path).status_code == 403
    superuser.refresh_from_db()
    assert superuser.first_name == "" and superuser.check_password("root-pass-1234")
    assert as_root.patch(path, {"first_name": "Rooty"}).status_code == 200


def test_delete_answers_204_and_keeps_past_deliveries(as_staff, member):
    burst = BurstFactory(recipients=[member])
    DeliveryFactory(burst=burst, member=member, status=DeliveryStatus.SENT)
    response = as_staff.delete(f"/api/members/{member.pk}/")
    assert response.status_code == 204 and response.content == b""
    assert not Member.objects.filter(pk=member.pk).exists()
    delivery = Delivery.objects.get(burst=burst)
    assert delivery.member_id is None and delivery.email == "" and delivery.status == DeliveryStatus.SENT
    assert as_staff.get(f"/api/email-burst/{burst.pk}/stats/").json()["sent_count"] == 1
    assert as_staff.delete(f"/api/members/{member.pk}/").status_code == 404


def test_non_staff_create_refuses_staff_flags(as_root):
    response = as_root.post("/api/non-staff/", new_member(is_staff=True))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "is_staff"
    assert as_root.post("/api/non-staff/", new_member()).status_code == 201


def test_staff_has_no_create(as_root):
    assert as_root.post("/api/staff/", new_member()).status_code == 405


def test_answers_never_contain_password_hashes(as_root, member, staff_user):
    for path in ("/api/members/", f"/api/members/{member.pk}/", "/api/staff/", "/api/non-staff/"):
        content = as_root.get(path).content.decode()
        assert "password" not in content and member.password not in content
