"""Fixtures of the admin tests: logged-in clients, and the browser's."""

from __future__ import annotations

import pytest
from django.test import Client

from members.models import Member
from tests.admin.browser import chromium_browser, page  # noqa: F401  (browser fixtures)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def root_client(client: Client, superuser: Member) -> Client:
    client.force_login(superuser)
    return client


@pytest.fixture
def editor_client(editor: Member) -> Client:
    client = Client()
    client.force_login(editor)
    return client
