"""API authentication (login, token refresh and verify, the staff bearer check)
and the member, staff and non-staff endpoints (SPEC section 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status
from ninja.errors import AuthorizationError
from ninja.schema import DjangoGetter
from ninja_jwt import exceptions as jwt_exceptions
from ninja_jwt.authentication import JWTAuth
from ninja_jwt.schema import TokenObtainPairInputSchema, TokenRefreshInputSchema, TokenVerifyInputSchema
from pydantic import model_validator

from members import services
from members.models import Member
from members.schemas import (
    OBJECT_ERRORS,
    UNSTORABLE,
    ErrorOut,
    MemberIn,
    MemberOut,
    MemberPage,
    MemberPatch,
    MemberQuery,
    TokenPairOut,
    ValidationErrorOut,
    VerifiedOut,
    paginate,
    responses,
)

# --- authentication -------------------------------------------------------------------


def body_size_check(request: HttpRequest, limit: int | None = None) -> None:
    """413 for a declared body above the limit, before anything reads it."""
    if limit is None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if limit is not None and length > limit:
        raise RequestDataTooBig("Request body exceeded the size limit.")


def attachment_body_limit() -> int:
    """An upload may carry a whole attachment plus its multipart framing and form fields."""
    return settings.ATTACHMENT_MAX_SIZE + (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)


class StaffAuth(JWTAuth):
    """JWT bearer token (from `POST /api/login/`) of an active staff member.

    Decided before the request body is read: no or a bad token is 401, a
    non-staff member (or staff without the operation's permission) 403, then a
    body above the size limit 413.
    """

    openapi_bearerFormat = "JWT"

    def __init__(self, *, permission: str | None = None, body_limit: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.permission = permission
        self.body_limit = body_limit

    def authenticate(self, request: HttpRequest, token: str) -> Member:
        user = self.jwt_authenticate(request, token)
        if not user.is_staff:
            raise AuthorizationError(message="Staff access required.")
        if self.permission and not user.has_perm(self.permission):
            raise AuthorizationError(message=f"The {self.permission} permission is required.")
        body_size_check(request, self.body_limit() if self.body_limit else None)
        return user


class SenderAuth(StaffAuth):
    """JWT bearer token of an active staff member with the `campaigns.send_emailburst`
    permission (superusers have it): sending, scheduling, pausing, resuming,
    cancelling and retrying."""

    def __init__(self) -> None:
        super().__init__(permission="campaigns.send_emailburst")


staff_auth = StaffAuth()
sender_auth = SenderAuth()


def client_ip(request: HttpRequest) -> str:
    # Behind N trusted proxies (TRUSTED_PROXY_COUNT), the client is the address the
    # outermost of them saw: the N-th from the right in X-Forwarded-For. Anything
    # further left is whatever the client chose to send.
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or "unknown"


class LoginIn(TokenObtainPairInputSchema):
    """ninja-jwt's credentials schema, with 422 for blank fields and login throttling."""

    @classmethod
    def validate_values(cls, values: dict) -> dict:
        # Missing fields and wrong types are left to pydantic (422 naming the field).
        return _check_strings(values, ("username", "password"))

    def authenticate(self, request: HttpRequest, credentials: dict) -> None:
        username, ip = credentials.get("username") or "", client_ip(request)
        services.login_throttle_check(username=username, ip=ip)
        try:
            super().authenticate(request, credentials)
            self.check_user_authentication_rule()
        except jwt_exceptions.AuthenticationFailed:
            services.login_failure_record(username=username, ip=ip)
            raise
        services.login_success_record(username=username)


class RefreshIn(TokenRefreshInputSchema):
    """ninja-jwt's refresh schema; `services.token_refresh` does the rest."""

    @model_validator(mode="before")
    @classmethod
    def validate_schema(cls, values: Any) -> Any:
        return _check_strings(values, ("refresh",))


class VerifyIn(TokenVerifyInputSchema):
    """ninja-jwt's verify schema; the token itself is checked by `services.token_verify`
    (a blacklisted token is a 401 there, where ninja-jwt would answer 400)."""

    @model_validator(mode="before")
    @classmethod
    def validate_schema(cls, values: Any) -> Any:
        return _check_strings(values, ("token",))


def _check_strings(values: Any, names: tuple[str, ...]) -> Any:
    """422 for a blank field, or one the database or a JWT decoder cannot take."""
    data = values._obj if isinstance(values, DjangoGetter) else values  # ninja wraps the input
    if not isinstance(data, dict):
        return values
    errors = {}
    for name in names:
        value = data.get(name)
        if not isinstance(value, str):
            continue
        if not value:
            errors[name] = "This field may not be blank."
        elif UNSTORABLE.search(value):
            errors[name] = "must not contain NUL characters or unpaired surrogates"
    if errors:
        raise jwt_exceptions.ValidationError(errors)
    return values


auth_router = Router(tags=["auth"])
PUBLIC_ERRORS = {413: ErrorOut, 422: ValidationErrorOut}


@auth_router.post(
    "/login/",
    auth=None,
    response={200: TokenPairOut, 401: ErrorOut, 429: ErrorOut, **PUBLIC_ERRORS},
    summary="Log in",
    operation_id="login",
)
def login(request: HttpRequest, credentials: LoginIn):
    """Public. Exchanges a username and password for an access token (15 minutes) and a
    refresh token (one day). Unknown user, wrong password and inactive member get
    the same 401; 10 failed attempts a minute per username or per address get 429."""
    return credentials.to_response_schema()


@auth_router.post(
    "/token/refresh/",
    auth=None,
    response={200: TokenPairOut, 401: ErrorOut, **PUBLIC_ERRORS},
    summary="Refresh an access token",
    operation_id="token_refresh",
)
def token_refresh(request: HttpRequest, body: RefreshIn):
    """Public. Gives a new access token and a rotated refresh token; the refresh token
    sent is blacklisted, so using it again is a 401."""
    return services.token_refresh(refresh=body.refresh)


@auth_router.post(
    "/token/verify/",
    auth=None,
    response={200: VerifiedOut, 401: ErrorOut, **PUBLIC_ERRORS},
    summary="Verify a token",
    operation_id="token_verify",
)
def token_verify(request: HttpRequest, body: VerifyIn):
    """Public. 200 with `{}` when the token is valid and its member active, 401 otherwise."""
    services.token_verify(token=body.token)
    return {}


# --- members, staff, non-staff ---------------------------------------------------------

members_router = Router(auth=staff_auth)

# scope name -> (URL prefix, is_staff filter, OpenAPI tag)
SCOPES: dict[str, tuple[str, bool | None, str]] = {
    "members": ("/members/", None, "members"),
    "staff": ("/staff/", True, "staff"),
    "non_staff": ("/non-staff/", False, "non-staff"),
}


def _scoped(is_staff: bool | None) -> QuerySet[Member]:
    queryset = Member.objects.order_by("id")
    return queryset if is_staff is None else queryset.filter(is_staff=is_staff)


def _search(queryset: QuerySet[Member], text: str | None) -> QuerySet[Member]:
    for word in (text or "").split():
        queryset = queryset.filter(
            Q(username__icontains=word)
            | Q(email__icontains=word)
            | Q(first_name__icontains=word)
            | Q(middle_name__icontains=word)
            | Q(last_name__icontains=word)
        )
    return queryset


def _replacement(payload: MemberIn) -> dict[str, Any]:
    """PUT: every field, omitted optional ones at their defaults; privileges and
    password only when sent."""
    fields = payload.model_dump()
    for name in ("password", "is_staff", "is_superuser"):
        if fields[name] is None:
            del fields[name]
    return fields


# The rights rule of members.services, as the OpenAPI descriptions state it.
RIGHTS = (
    "Rights: only a superuser may change `is_staff`, `is_superuser` (sending the current value "
    "is no change), or anything of a superuser; only a superuser may change the `username`, "
    "`email`, `password` or `is_active` of a staff user or a superuser, or delete one. Nobody, "
    "superusers included, sets their own `password` here: that is the admin's password change "
    "page (`/admin/password_change/`), which asks for the current one. A non-staff member's "
    "password may be set by any staff member. A refused change is a 403 naming the rule and "
    "changes nothing."
)


def _add_scope(scope: str) -> None:
    prefix, is_staff, tag = SCOPES[scope]
    item = prefix + "{int:id}/"
    what = {"members": "member", "staff": "staff user", "non_staff": "non-staff member"}[scope]

    def get_member(member_id: int) -> Member:
        return get_object_or_404(_scoped(is_staff), pk=member_id)

    @members_router.get(
        prefix,
        response=responses({200: MemberPage}),
        operation_id=f"{scope}_list",
        summary=f"List {what}s",
        tags=[tag],
    )
    def list_members(request: HttpRequest, query: Query[MemberQuery]):
        """Staff only. Ordered by id, paginated with `limit` (at most 500) and `offset`."""
        return paginate(_search(_scoped(is_staff), query.search), query)

    if scope != "staff":

        @members_router.post(
            prefix,
            response=responses({201: MemberOut}, s409=ErrorOut),
            operation_id=f"{scope}_create",
            summary=f"Create a {what}",
            tags=[tag],
        )
        def create_member(request: HttpRequest, payload: MemberIn):
            """Staff only; only a superuser may create staff or superusers (403 for anyone
            else). A non-superuser may give the new (non-staff) member a password. 409 when
            the email (case-insensitively) or username is taken."""
            fields = _replacement(payload)
            if is_staff is False and (fields.get("is_staff") or fields.get("is_superuser")):
                field = "is_staff" if fields.get("is_staff") else "is_superuser"
                return Status(422, _field_error(field, "A non-staff member cannot be staff or superuser."))
            member = services.member_create(actor=request.auth, **fields)
            return Status(201, member)

    @members_router.get(
        item,
        response=responses({200: MemberOut}, errors=OBJECT_ERRORS),
        operation_id=f"{scope}_get",
        summary=f"Get a {what}",
        tags=[tag],
    )
    def get_one(request: HttpRequest, id: int):
        """Staff only."""
        return get_member(id)

    @members_router.put(
        item,
        response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
        operation_id=f"{scope}_replace",
        summary=f"Replace a {what}",
        description=(
            "Staff only. Omitted optional fields are reset to their defaults, except `is_staff` "
            "and `is_superuser` (unchanged) and `password` (unchanged).\n\n" + RIGHTS
        ),
        tags=[tag],
    )
    def replace(request: HttpRequest, id: int, payload: MemberIn):
        member = get_member(id)
        return services.member_update(actor=request.auth, member=member, **_replacement(payload))

    @members_router.patch(
        item,
        response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
        operation_id=f"{scope}_update",
        summary=f"Update a {what}",
        description="Staff only. Changes only the fields sent.\n\n" + RIGHTS,
        tags=[tag],
    )
    def update(request: HttpRequest, id: int, payload: MemberPatch):
        member = get_member(id)
        return services.member_update(
            actor=request.auth, member=member, **payload.model_dump(exclude_unset=True)
        )

    @members_router.delete(
        item,
        response=responses({204: None}, errors=OBJECT_ERRORS),
        operation_id=f"{scope}_delete",
        summary=f"Delete a {what}",
        tags=[tag],
    )
    def delete(request: HttpRequest, id: int):
        """Staff only; only a superuser may delete a staff user or a superuser (403 for
        anyone else). Past deliveries stay in the statistics, without the address."""
        services.member_delete(actor=request.auth, member=get_member(id))
        return Status(204, None)


def _field_error(field: str, message: str) -> dict[str, Any]:
    return {"detail": [{"loc": ["body", field], "field": field, "msg": message, "type": "value_error"}]}


for _scope in SCOPES:
    _add_scope(_scope)
