"""The signed unsubscribe token of a member, and the link that carries it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.urls import reverse

UNSUBSCRIBE_SALT = "emailer.unsubscribe"


@lru_cache(maxsize=4)
def _unsubscribe_key(secret: str) -> bytes:
    # Derived once per process; per-token key derivation cost more than the rest
    # of a message's headers.
    return hashlib.sha256(f"{UNSUBSCRIBE_SALT}:{secret}".encode()).digest()


def _unsubscribe_signature(member_id: str) -> str:
    digest = hmac.new(_unsubscribe_key(settings.SECRET_KEY), member_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def unsubscribe_token(member_id: int) -> str:
    """Stable (no timestamp): the same member always gets the same link."""
    return f"{member_id}.{_unsubscribe_signature(str(member_id))}"


def member_id_from_token(token: str) -> int:
    """Raises signing.BadSignature for a tampered token."""
    member_id, _, signature = token.partition(".")
    if not (member_id.isascii() and member_id.isdigit()):
        raise signing.BadSignature("bad unsubscribe token")
    expected = _unsubscribe_signature(member_id).encode()
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
        raise signing.BadSignature("bad unsubscribe token")
    return int(member_id)


@lru_cache(maxsize=4)
def _unsubscribe_prefix(site_url: str) -> str:
    # reverse() once: per message it costs more than rendering the templates.
    return site_url + reverse("unsubscribe", args=["TOKEN"]).replace("TOKEN/", "")


def unsubscribe_url(member_id: int) -> str:
    return f"{_unsubscribe_prefix(settings.SITE_URL)}{unsubscribe_token(member_id)}/"
