"""Fixtures of the API tests: a JSON client with a bearer token, and the cast."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from ninja_jwt.tokens import RefreshToken


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """PBKDF2 at a million rounds makes every login take a third of a second."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Login throttling counts in the cache: every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


class Api:
    """The Django test client speaking JSON, with an optional bearer token."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client()
        self.token = token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, data: Any = None, *, raw: bytes | str | None = None, **kw):
        if raw is not None:
            return self.client.generic(
                method.upper(),
                path,
                data=raw,
                content_type=kw.pop("content_type", "application/json"),
                headers=self.headers(kw.pop("headers", None)),
                **kw,
            )
        body = json.dumps(data) if data is not None else ""
        call = getattr(self.client, method.lower())
        if method.upper() == "GET":
            return call(path, data=data or {}, headers=self.headers(kw.pop("headers", None)), **kw)
        return call(
            path,
            data=body,
            content_type=kw.pop("content_type", "application/json"),
            headers=self.headers(kw.pop("headers", None)),
            **kw,
        )

    def get(self, path: str, params: dict | None = None, **kw):
        return self.request("GET", path, params, **kw)

    def post(self, path: str, data: Any = None, **kw):
        return self.request("POST", path, data, **kw)

    def put(self, path: str, data: Any = None, **kw):
        return self.request("PUT", path, data, **kw)

    def patch(self, path: str, data: Any = None, **kw):
        return self.request("PATCH", path, data, **kw)

    def delete(self, path: str, **kw):
        return self.request("DELETE", path, None, **kw)


def access_token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


@pytest.fixture
def anon() -> Api:
    return Api()


@pytest.fixture
def as_member(member) -> Api:
    return Api(access_token(member))


@pytest.fixture
def as_staff(staff_user) -> Api:
    """Staff with every campaigns and members permission, send_emailburst included."""
    return Api(access_token(staff_user))


@pytest.fixture
def staff_without_send(db):
    """Staff with every campaigns and members permission but send_emailburst."""
    from tests.factories import EditorFactory

    return EditorFactory(username="nosend", email="nosend@example.test", password="nosend-pass-1234")


@pytest.fixture
def as_staff_no_send(staff_without_send) -> Api:
    return Api(access_token(staff_without_send))


@pytest.fixture
def as_root(superuser) -> Api:
    return Api(access_token(superuser))
