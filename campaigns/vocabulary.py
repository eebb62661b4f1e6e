"""One set of words, colours and number formats for every page that shows bursts and
deliveries (the burst list and report, the dashboard, the member timeline, exports).

- "Failed" always means `failed_count`: not found + rejected + connection error + other
  error (SPEC section 4). The delivery status `failed` is therefore called "Rejected"
  wherever it is shown, so that one word never stands for two numbers. The API keeps
  its status values; only the words shown to people are here.
- A percentage (a success rate, how far a burst is) has one decimal and " %":
  "94.9 %"; "—" when there is nothing to measure.
- Counts have thousands separators ("1,234"); speeds are "1,234 msgs/s".
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from campaigns.models import BurstStatus, DeliveryStatus

NOTHING = "—"

# --- words ---------------------------------------------------------------------------------------

DELIVERY_STATUS_LABELS: dict[str, str] = {
    DeliveryStatus.PENDING: "Pending",
    DeliveryStatus.SENT: "Sent",
    DeliveryStatus.NOT_FOUND: "Not found",
    DeliveryStatus.FAILED: "Rejected",
    DeliveryStatus.CONNECTION_ERROR: "Connection error",
    DeliveryStatus.OTHER_ERROR: "Other error",
    DeliveryStatus.SKIPPED: "Skipped",
}
# Kept under its older name for the modules that import it.
STATUS_LABELS = DELIVERY_STATUS_LABELS

# What each status means, for tooltips and help texts.
DELIVERY_STATUS_HELP: dict[str, str] = {
    DeliveryStatus.PENDING: "Not finished yet: waiting, being sent, or waiting for a retry.",
    DeliveryStatus.SENT: "The receiving server accepted the message.",
    DeliveryStatus.NOT_FOUND: "The address does not exist (5.1.x, 5.2.1, or 550/551/553).",
    DeliveryStatus.FAILED: "Refused for good by the receiving server (e.g. 554 spam), "
    "or a temporary refusal that lasted through every retry.",
    DeliveryStatus.CONNECTION_ERROR: "No usable connection to the server after every retry.",
    DeliveryStatus.OTHER_ERROR: "Something else went wrong for this recipient (template, encoding, attachment).",
    DeliveryStatus.SKIPPED: "Not sent: unsubscribed, inactive, suppressed, or the burst was cancelled.",
}

# The figures of a burst, by their `BurstStats` name.
FIGURE_LABELS: dict[str, str] = {
    "total_recipients": "Recipients",
    "sent_count": "Sent",
    "failed_count": "Failed",
    "pending_count": "Pending",
    "skipped_count": "Skipped",
    "success_rate": "Success rate",
    "retrying_count": "Waiting for a retry",
}
FIGURE_HELP: dict[str, str] = {
    "failed_count": "Not found, rejected, connection error and other error together.",
    "success_rate": "Sent out of the recipients there was something to send to (skipped ones left out).",
    "retrying_count": "Pending deliveries that were refused for now (e.g. greylisting, a full mailbox) "
    "and will be tried again.",
}
FAILED_WORD = FIGURE_LABELS["failed_count"]
FAILED_STATUSES_TEXT = "not found, rejected, connection error or other error"

BURST_STATUS_LABELS: dict[str, str] = dict(BurstStatus.choices)

# --- colours ------------------------------------------------------------------------------------

# unfold's label variants.
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
# Charts and bars.
SENT_COLOR = "#16a34a"
FAILED_COLOR = "#dc2626"
SKIPPED_COLOR = "#a8a29e"
DELIVERY_STATUS_COLORS: dict[str, str] = {
    DeliveryStatus.SENT: SENT_COLOR,
    DeliveryStatus.PENDING: "#60a5fa",
    DeliveryStatus.SKIPPED: SKIPPED_COLOR,
    DeliveryStatus.NOT_FOUND: "#f97316",
    DeliveryStatus.FAILED: FAILED_COLOR,
    DeliveryStatus.CONNECTION_ERROR: "#9333ea",
    DeliveryStatus.OTHER_ERROR: "#be185d",
}

# --- number formats --------------------------------------------------------------------------------


def format_count(value: int | None) -> str:
    """1234 -> "1,234"; None -> "—"."""
    return NOTHING if value is None else f"{value:,}"


def format_percent(value: float | None) -> str:
    """A success rate or a share done: 94.87 -> "94.9 %"; None (nothing to measure) -> "—"."""
    return NOTHING if value is None else f"{value:,.1f} %"


def format_speed(per_second: float | None) -> str:
    """Messages per second: "1,234 msgs/s", "2.5 msgs/s" under 10; None -> "—"."""
    if per_second is None:
        return NOTHING
    return f"{per_second:,.0f} msgs/s" if per_second >= 10 else f"{per_second:.1f} msgs/s"


def format_duration(seconds: float | None) -> str:
    """42 -> "42 s", 185 -> "3 min 05 s", 7500 -> "2 h 05 min", 0.3 -> "less than 1 s";
    None -> "—"."""
    if seconds is None:
        return NOTHING
    if 0 < seconds < 0.5:
        return "less than 1 s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_clock(moment: datetime | None) -> str:
    """A time in the site's zone: "14:05:30" today, "2025-05-01 14:05" another day."""
    if moment is None:
        return NOTHING
    local = timezone.localtime(moment)
    if local.date() == timezone.localdate():
        return f"{local:%H:%M:%S}"
    return f"{local:%Y-%m-%d %H:%M}"


def format_moment(moment: datetime | None) -> str:
    """A date and time in the site's zone: "2025-05-01 14:05"."""
    return NOTHING if moment is None else f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


def deliveries_word(count: int) -> str:
    """ "1 delivery", "3 deliveries"."""
    return f"{format_count(count)} deliver{'y' if count == 1 else 'ies'}"
