"""How statuses are named and coloured wherever they are shown (the admin's
badges, the members' delivery timeline): unfold's label variants per status."""

from __future__ import annotations

from campaigns.models import BurstStatus, DeliveryStatus

BURST_STATUS_VARIANTS: dict[str, str] = {
    BurstStatus.DRAFT: "default",
    BurstStatus.SCHEDULED: "info",
    BurstStatus.SENDING: "primary",
    BurstStatus.PAUSED: "warning",
    BurstStatus.SENT: "success",
    BurstStatus.CANCELLED: "danger",
}
DELIVERY_STATUS_VARIANTS: dict[str, str] = {
    DeliveryStatus.PENDING: "info",
    DeliveryStatus.SENT: "success",
    DeliveryStatus.SKIPPED: "default",
    DeliveryStatus.NOT_FOUND: "warning",
    DeliveryStatus.FAILED: "danger",
    DeliveryStatus.CONNECTION_ERROR: "danger",
    DeliveryStatus.OTHER_ERROR: "danger",
}
STATUS_LABELS = dict(DeliveryStatus.choices)
