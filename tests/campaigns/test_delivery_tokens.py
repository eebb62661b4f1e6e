"""The signed delivery token in every message's Message-ID (campaigns.engine.tokens):
stable per delivery, refused when forged or garbled, never made for a test send."""

from __future__ import annotations

import re

import pytest
from django.core import signing

from campaigns.engine import mime
from campaigns.engine.tokens import DELIVERY_TOKEN_PATTERN, delivery_id_from_token, delivery_token


@pytest.mark.parametrize("delivery_id", [1, 2, 255, 10**6, 2**40])
def test_a_token_gives_back_its_delivery_id(delivery_id):
    assert delivery_id_from_token(delivery_token(delivery_id)) == delivery_id


def test_a_token_is_the_same_every_time_and_differs_between_deliveries():
    assert delivery_token(7) == delivery_token(7)
    assert delivery_token(7) != delivery_token(8)


def test_a_token_fits_a_message_id_in_lower_case_and_reads_back_in_any_case():
    token = delivery_token(123456)

    assert re.fullmatch(DELIVERY_TOKEN_PATTERN, token)
    assert token == token.lower() and len(token) <= 40
    assert delivery_id_from_token(token.upper()) == 123456


def test_a_token_made_with_another_secret_is_refused(settings):
    token = delivery_token(42)
    settings.SECRET_KEY = "another secret entirely"

    with pytest.raises(signing.BadSignature):
        delivery_id_from_token(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "d2a",
        "d2a.",
        "d2a.00000000000000000000",
        "x2a.00000000000000000000",
        "d.00000000000000000000",
        "d2a.zzzzzzzzzzzzzzzzzzzz",
        "d2a.0000000000000000000\u00e9",
        "burst1.delivery42",
    ],
)
def test_a_garbled_or_forged_token_is_refused(token):
    with pytest.raises(signing.BadSignature):
        delivery_id_from_token(token)


def test_another_delivery_id_under_a_real_signature_is_refused():
    ident, signature = delivery_token(42).split(".")

    with pytest.raises(signing.BadSignature):
        delivery_id_from_token(f"d2b.{signature}")
    with pytest.raises(signing.BadSignature):
        delivery_id_from_token(f"d02a.{signature}")  # the same id written another way


def test_there_is_no_token_for_a_delivery_that_does_not_exist():
    with pytest.raises(ValueError):
        delivery_token(0)


def test_the_message_id_of_a_delivery_carries_its_token_and_the_senders_domain():
    message_id = mime.message_id(burst_id=3, delivery_id=42, sender="News@Example.ORG")

    assert message_id == f"<{delivery_token(42)}@example.org>"


def test_the_message_ids_of_a_test_send_carry_no_valid_token():
    ids = [
        mime.message_id(burst_id=3, delivery_id=0, sender="news@example.org"),
        mime.fresh_message_id(burst_id=3, sender="news@example.org"),
    ]

    for message_id in ids:
        local = message_id.strip("<>").split("@")[0]
        assert not re.search(DELIVERY_TOKEN_PATTERN, local)
        with pytest.raises(signing.BadSignature):
            delivery_id_from_token(local)
