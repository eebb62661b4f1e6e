"""The signed unsubscribe token of a member and the link that carries it; the signed
delivery token every message's Message-ID carries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
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


# --- the delivery token, carried in every message's Message-ID -------------------------------------
# `<{token}@{domain}>`, token = "d" + the delivery id in hex + "." + an 80-bit MAC
# in hex: a DSN or a complaint that quotes the Message-ID names the delivery, and
# one without a valid signature names nobody. Lower case only, so a server that
# changes the case of a header changes nothing. The MAC is keyed BLAKE2b (RFC 7693,
# a MAC by design) with a key of its own derived like the unsubscribe key: it costs
# a third of an HMAC-SHA256, and it is computed for every message sent; hex, as
# Python's base32 costs more than the rest of the Message-ID.

DELIVERY_SALT = "emailer.delivery"
# The token as it appears in a Message-ID; `parse` finds candidates with it,
# `delivery_id_from_token` decides whether one is genuine.
DELIVERY_TOKEN_PATTERN = r"d[0-9a-f]{1,16}\.[0-9a-f]{20}"
_DELIVERY_TOKEN = re.compile(r"d([0-9a-f]{1,16})\.([0-9a-f]{20})")


@lru_cache(maxsize=4)
def _delivery_key(secret: str) -> bytes:
    return hashlib.sha256(f"{DELIVERY_SALT}:{secret}".encode()).digest()


def _delivery_signature(ident: str) -> str:
    key = _delivery_key(settings.SECRET_KEY)
    return hashlib.blake2b(ident.encode("ascii"), key=key, digest_size=10).hexdigest()


def delivery_token(delivery_id: int) -> str:
    """The same for every try of one delivery (a function of its id alone)."""
    if delivery_id < 1:
        raise ValueError("only a saved delivery (id >= 1) has a token")
    ident = f"{delivery_id:x}"
    return f"d{ident}.{_delivery_signature(ident)}"


def delivery_id_from_token(token: str) -> int:
    """Raises signing.BadSignature for a forged, garbled or non-canonical token."""
    match = _DELIVERY_TOKEN.fullmatch(token.strip().lower()) if token.isascii() else None
    if match is None:
        raise signing.BadSignature("bad delivery token")
    ident, signature = match.groups()
    if ident.startswith("0") or not hmac.compare_digest(signature, _delivery_signature(ident)):
        raise signing.BadSignature("bad delivery token")
    return int(ident, 16)
