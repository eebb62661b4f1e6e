"""Login, token refresh and verify (issue 4 point 1)."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from ninja_jwt.tokens import AccessToken, RefreshToken

from members import services
from tests.api.conftest import Api
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

LOGIN = "/api/login/"


def login(api: Api, username: str, password: str, **kw):
    return api.post(LOGIN, {"username": username, "password": password}, **kw)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_login_gives_access_and_refresh_tokens(anon, staff_user):
    response = login(anon, "sam.staff", "staff-pass-1234")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh"}
    access = AccessToken(body["access"])
    refresh = RefreshToken(body["refresh"])
    assert access["user_id"] == staff_user.pk
    assert timedelta(0) < timedelta(seconds=access["exp"] - access["iat"]) <= timedelta(minutes=15)
    assert timedelta(seconds=refresh["exp"] - refresh["iat"]) == timedelta(days=1)
    # and it works
    assert Api(body["access"]).get("/api/members/").status_code == 200


OTHER_KEY = "not-the-configured-key-" * 3


def test_tokens_are_signed_with_the_configured_key(anon, staff_user):
    key = settings.NINJA_JWT["SIGNING_KEY"]
    assert key and key != OTHER_KEY
    access = login(anon, "sam.staff", "staff-pass-1234").json()["access"]

    # what login issues verifies with the configured key, and not with another
    assert str(jwt.decode(access, key, algorithms=["HS256"])["user_id"]) == str(staff_user.pk)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(access, OTHER_KEY, algorithms=["HS256"])
    # and the API takes the same claims signed with the configured key only
    claims = _claims(staff_user)
    assert Api(jwt.encode(claims, key, algorithm="HS256")).get("/api/members/").status_code == 200
    assert Api(jwt.encode(claims, OTHER_KEY, algorithm="HS256")).get("/api/members/").status_code == 401


def test_unknown_user_wrong_password_and_inactive_get_the_same_401(anon, staff_user):
    MemberFactory(username="sleeper", password="sleeper-pass-1234", is_active=False)
    unknown = login(anon, "nobody", "whatever-pass")
    wrong = login(anon, "sam.staff", "not-the-password")
    inactive = login(anon, "sleeper", "sleeper-pass-1234")
    assert unknown.status_code == wrong.status_code == inactive.status_code == 401
    assert unknown.json() == wrong.json() == inactive.json()
    assert unknown.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"password": "x"}, "username"),
        ({"username": "x"}, "password"),
        ({"username": "", "password": "x"}, "username"),
        ({"username": "x", "password": ""}, "password"),
        ({"username": 12, "password": "x"}, "username"),
    ],
)
def test_login_with_missing_or_blank_fields_is_422(anon, body, field):
    response = anon.post(LOGIN, body)
    assert response.status_code == 422, response.content
    assert field in [item["field"] for item in response.json()["detail"]]


def test_refresh_rotates_and_a_used_refresh_token_is_refused(anon, staff_user):
    first = login(anon, "sam.staff", "staff-pass-1234").json()
    response = anon.post("/api/token/refresh/", {"refresh": first["refresh"]})
    assert response.status_code == 200, response.content
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert Api(second["access"]).get("/api/members/").status_code == 200
    # the used one is blacklisted
    again = anon.post("/api/token/refresh/", {"refresh": first["refresh"]})
    assert again.status_code == 401
    assert anon.post("/api/token/verify/", {"token": first["refresh"]}).status_code == 401
    # the new one still works, once
    assert anon.post("/api/token/refresh/", {"refresh": second["refresh"]}).status_code == 200


def test_refresh_refuses_an_access_token_and_garbage(anon, staff_user):
    pair = login(anon, "sam.staff", "staff-pass-1234").json()
    assert anon.post("/api/token/refresh/", {"refresh": pair["access"]}).status_code == 401
    assert anon.post("/api/token/refresh/", {"refresh": "garbage"}).status_code == 401
    assert anon.post("/api/token/refresh/", {}).status_code == 422
    assert anon.post("/api/token/refresh/", {"refresh": ""}).status_code == 422


def test_refresh_of_a_deactivated_member_is_refused(anon, staff_user):
    pair = login(anon, "sam.staff", "staff-pass-1234").json()
    staff_user.is_active = False
    staff_user.save()
    assert anon.post("/api/token/refresh/", {"refresh": pair["refresh"]}).status_code == 401


def test_verify(anon, staff_user):
    pair = login(anon, "sam.staff", "staff-pass-1234").json()
    assert anon.post("/api/token/verify/", {"token": pair["access"]}).status_code == 200
    assert anon.post("/api/token/verify/", {"token": pair["refresh"]}).status_code == 200
    assert anon.post("/api/token/verify/", {"token": "not.a.token"}).status_code == 401
    assert anon.post("/api/token/verify/", {"token": 42}).status_code == 422
    assert anon.post("/api/token/verify/", {}).status_code == 422


def _claims(user, **extra) -> dict:
    now = int(timezone.now().timestamp())
    claims = {"token_type": "access", "exp": now + 600, "iat": now, "jti": "f" * 32, "user_id": user.pk}
    claims.update(extra)
    return claims


def _bad_tokens(staff_user, other) -> dict[str, str]:
    key = settings.NINJA_JWT["SIGNING_KEY"]
    good = jwt.encode(_claims(staff_user), key, algorithm="HS256")
    header, _, signature = good.split(".")
    expired = AccessToken.for_user(staff_user)
    expired.set_exp(from_time=timezone.now() - timedelta(hours=1))
    return {
        "alg none": b64({"alg": "none", "typ": "JWT"}) + "." + b64(_claims(staff_user)) + ".",
        "alg none with signature": b64({"alg": "none", "typ": "JWT"})
        + "."
        + b64(_claims(staff_user))
        + "."
        + signature,
        "wrong key": jwt.encode(_claims(staff_user), "some-other-key-" * 4, algorithm="HS256"),
        "expired": str(expired),
        "tampered payload": header + "." + b64(_claims(other)) + "." + signature,
        "tampered signature": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "refresh used as access": str(RefreshToken.for_user(staff_user)),
        "HS512 with the right key": jwt.encode(_claims(staff_user), key, algorithm="HS512"),
        "no user claim": jwt.encode({k: v for k, v in _claims(staff_user).items() if k != "user_id"}, key),
        "unknown user": jwt.encode(_claims(staff_user, user_id=999999), key, algorithm="HS256"),
        "garbage": "garbage",
        "empty": "",
    }


def test_bad_tokens_get_401_everywhere(staff_user, superuser):
    tokens = _bad_tokens(staff_user, superuser)
    # the control: a token built the same way with the right key works
    good = jwt.encode(_claims(staff_user), settings.NINJA_JWT["SIGNING_KEY"], algorithm="HS256")
    assert Api(good).get("/api/members/").status_code == 200
    for name, token in tokens.items():
        api = Api(token)
        assert api.get("/api/members/").status_code == 401, name
        assert api.post("/api/members/", {"garbage": True}).status_code == 401, name
        if name != "refresh used as access":  # a valid refresh token verifies
            assert api.post("/api/token/verify/", {"token": token}).status_code in {401, 422}, name


def test_a_deactivated_members_valid_access_token_is_refused(staff_user):
    api = Api(str(AccessToken.for_user(staff_user)))
    assert api.get("/api/members/").status_code == 200
    staff_user.is_active = False
    staff_user.save()
    assert api.get("/api/members/").status_code == 401
    assert api.post("/api/token/verify/", {"token": api.token}).status_code == 401


def test_a_token_of_a_member_who_lost_staff_is_403(staff_user):
    api = Api(str(AccessToken.for_user(staff_user)))
    staff_user.is_staff = False
    staff_user.save()
    assert api.get("/api/members/").status_code == 403


# --- throttling ------------------------------------------------------------------------------


def test_ten_failures_for_one_username_throttle_it(anon, staff_user):
    for _ in range(10):
        assert login(anon, "sam.staff", "wrong-password").status_code == 401
    throttled = login(anon, "sam.staff", "staff-pass-1234")  # even the right password
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    # a case variant of the same username is the same username
    assert login(anon, "SAM.STAFF", "wrong-password").status_code == 429
    # from another address, the username is still throttled
    assert login(anon, "sam.staff", "staff-pass-1234", REMOTE_ADDR="10.9.9.9").status_code == 429


def test_ten_failures_from_one_address_throttle_it(anon, staff_user):
    for n in range(10):
        assert login(anon, f"guess{n}", "wrong-password", REMOTE_ADDR="10.1.1.1").status_code == 401
    assert login(anon, "sam.staff", "staff-pass-1234", REMOTE_ADDR="10.1.1.1").status_code == 429
    # another address is not affected
    assert login(anon, "sam.staff", "staff-pass-1234", REMOTE_ADDR="10.2.2.2").status_code == 200


def test_nine_failures_then_success_is_not_throttled(anon, staff_user):
    for _ in range(9):
        assert login(anon, "sam.staff", "wrong-password").status_code == 401
    assert login(anon, "sam.staff", "staff-pass-1234").status_code == 200


def test_throttling_ends_after_a_minute(anon, staff_user, monkeypatch):
    for _ in range(10):
        login(anon, "sam.staff", "wrong-password")
    assert login(anon, "sam.staff", "staff-pass-1234").status_code == 429
    # The window is the cache timeout: let it pass for every backend the suite runs on.
    from django.core.cache import cache

    for key in services._login_keys(username="sam.staff", ip="127.0.0.1"):
        cache.touch(key, 0.001)
    time.sleep(0.05)
    assert login(anon, "sam.staff", "staff-pass-1234").status_code == 200


def test_login_is_csrf_exempt(staff_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(
        LOGIN, {"username": "sam.staff", "password": "staff-pass-1234"}, content_type="application/json"
    )
    assert response.status_code == 200


def test_behind_a_trusted_proxy_the_throttle_counts_the_forwarded_client(anon, staff_user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    for i in range(10):
        # each failure from another client behind the same proxy
        anon.client.post(
            "/api/login/",
            {"username": f"nobody{i}", "password": "x"},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        )
    ok = anon.client.post(
        "/api/login/",
        {"username": "sam.staff", "password": "staff-pass-1234"},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    assert ok.status_code == 200
    for _ in range(10):
        anon.client.post(
            "/api/login/",
            {"username": "someone", "password": "x"},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.9",
        )
    blocked = anon.client.post(
        "/api/login/",
        {"username": "sam.staff", "password": "staff-pass-1234"},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR="other-spoof, 203.0.113.9",
    )
    assert blocked.status_code == 429
