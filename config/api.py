"""The JSON API (SPEC section 7), mounted at /api/."""

from ninja_extra import NinjaExtraAPI

api = NinjaExtraAPI(title="Emailer API", version="1.0.0", urls_namespace="api")
