from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory


def progress(client, burst) -> dict:
    response = client.get(reverse("admin:campaigns_emailburst_progress", args=[burst.pk]))
    assert response.status_code == 200
    return response.json()


def test_it_says_when_the_rest_waits_for_retries(root_client):
    members = MemberFactory.create_bulk(4)
    burst = BurstFactory(status=BurstStatus.SENDING, recipients=members, started_at=timezone.now())
    DeliveryFactory.create_for(
        burst, members, status=lambda i: DeliveryStatus.SENT if i < 2 else DeliveryStatus.PENDING
    )
    retry_at = timezone.now() + timedelta(minutes=2)
    Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING).update(next_attempt_at=retry_at)

    body = progress(root_client, burst)

    assert body["pending"] == 2
    assert body["eta_display"] == f"waiting for retries, next at {timezone.localtime(retry_at):%H:%M:%S}"


def test_it_gives_an_eta_while_some_deliveries_can_go_now(root_client):
    members = MemberFactory.create_bulk(4)
    burst = BurstFactory(
        status=BurstStatus.SENDING, recipients=members, started_at=timezone.now() - timedelta(seconds=10)
    )
    DeliveryFactory.create_for(
        burst, members, status=lambda i: DeliveryStatus.SENT if i < 2 else DeliveryStatus.PENDING
    )

    body = progress(root_client, burst)

    # 2 done in about 10 s: the 2 pending ones take about 10 s more.
    assert body["eta_seconds"] is not None and 5 <= body["eta_seconds"] <= 20
    assert "waiting" not in body["eta_display"] and body["eta_display"] not in ("—", "done")
