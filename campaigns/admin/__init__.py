"""The campaigns admin: bursts (`bursts`, with their pages in `views`, `forms` and
`report`), deliveries (`deliveries`), mail events (`events`), and the dashboard (`dashboard`, the
UNFOLD["DASHBOARD_CALLBACK"]). Importing the package registers the model admins."""

from campaigns.admin import bursts, deliveries, events

__all__ = ["bursts", "deliveries", "events"]
