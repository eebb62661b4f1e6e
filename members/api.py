"""The login endpoints (login, token refresh and verify) and the member, staff and
non-staff endpoints. The staff bearer check itself is common.api.StaffAuth."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status
from ninja.schema import DjangoGetter
from ninja_jwt import exceptions as jwt_exceptions
from ninja_jwt.schema import TokenObtainPairInputSchema, TokenRefreshInputSchema, TokenVerifyInputSchema
from pydantic import model_validator

from common.api import (
    OBJECT_ERRORS,
    UNSTORABLE,
    UNSTORABLE_MESSAGE,
    ErrorOut,
    PageQuery,
    ValidationErrorOut,
    client_ip,
    paginate,
    responses,
    staff_auth,
)
from common.errors import InvalidInput
from members import selectors, services
from members.models import MailingList, Member, Segment
from members.schemas import (
    MailingListIn,
    MailingListOut,
    MailingListPage,
    MailingListPatch,
    MemberIdsIn,
    MemberIn,
    MemberOut,
    MemberPage,
    MemberPatch,
    MemberQuery,
    MembershipChangeOut,
    SegmentIn,
    SegmentOut,
    SegmentPage,
    SegmentPatch,
    TokenPairOut,
    VerifiedOut,
)

# --- login and tokens ------------------------------------------------------------------


class LoginIn(TokenObtainPairInputSchema):
    """ninja-jwt's credentials schema, with 422 for blank fields and login throttling."""

    @classmethod
    def validate_values(cls, values: dict) -> dict:
        # Missing fields and wrong types are left to pydantic (422 naming the field).
        return _check_strings(values, ("username", "password"))

    @classmethod
    def get_token(cls, user: Member) -> dict:
        return services.token_pair_for(user=user)

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
            errors[name] = UNSTORABLE_MESSAGE
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
#
# Three views of one table: /members/ (everyone), /staff/ (is_staff) and /non-staff/;
# an id outside the view is a 404. Staff accounts are created under /members/ only.

members_router = Router(auth=staff_auth)

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
LIST_DOC = (
    "Staff only. Ordered by id, paginated with `limit` (at most 500) and `offset`, or by "
    "following `next` (a cursor link)."
)
CREATE_DOC = (
    "Staff only; only a superuser may create staff or superusers (403 for anyone\n"
    "else). A non-superuser may give the new (non-staff) member a password. 409 when\n"
    "the email (case-insensitively) or username is taken."
)
REPLACE_DOC = (
    "Staff only. Omitted optional fields are reset to their defaults, except `is_staff` "
    "and `is_superuser` (unchanged) and `password` (unchanged).\n\n" + RIGHTS
)
UPDATE_DOC = "Staff only. Changes only the fields sent.\n\n" + RIGHTS
DELETE_DOC = (
    "Staff only; only a superuser may delete a staff user or a superuser (403 for\n"
    "anyone else). Past deliveries stay in the statistics, without the address."
)


def _member(member_id: int, *, is_staff: bool | None) -> Member:
    return get_object_or_404(selectors.member_list(is_staff=is_staff), pk=member_id)


def _page(request: HttpRequest, query: MemberQuery, *, is_staff: bool | None) -> dict[str, Any]:
    # Without a search, the number of rows is the tally the database keeps.
    count = None if (query.search or "").split() else selectors.member_count(is_staff=is_staff)
    return paginate(
        selectors.member_list(is_staff=is_staff, search=query.search), query, request, count=count
    )


def _replacement(payload: MemberIn) -> dict[str, Any]:
    """PUT: every field, omitted optional ones at their defaults; privileges and
    password only when sent."""
    fields = payload.model_dump()
    for name in ("password", "is_staff", "is_superuser"):
        if fields[name] is None:
            del fields[name]
    return fields


def _create(request: HttpRequest, payload: MemberIn, *, non_staff: bool = False) -> Status:
    fields = _replacement(payload)
    if non_staff and (fields.get("is_staff") or fields.get("is_superuser")):
        field = "is_staff" if fields.get("is_staff") else "is_superuser"
        raise InvalidInput("A non-staff member cannot be staff or superuser.", field=field)
    return Status(201, services.member_create(actor=request.auth, **fields))


def _replace(request: HttpRequest, member_id: int, payload: MemberIn, *, is_staff: bool | None) -> Member:
    member = _member(member_id, is_staff=is_staff)
    return services.member_update(actor=request.auth, member=member, **_replacement(payload))


def _update(request: HttpRequest, member_id: int, payload: MemberPatch, *, is_staff: bool | None) -> Member:
    member = _member(member_id, is_staff=is_staff)
    return services.member_update(actor=request.auth, member=member, **payload.model_dump(exclude_unset=True))


def _delete(request: HttpRequest, member_id: int, *, is_staff: bool | None) -> Status:
    services.member_delete(actor=request.auth, member=_member(member_id, is_staff=is_staff))
    return Status(204, None)


# /members/: everyone


@members_router.get(
    "/members/",
    response=responses({200: MemberPage}),
    operation_id="members_list",
    summary="List members",
    description=LIST_DOC,
    tags=["members"],
)
def members_list(request: HttpRequest, query: Query[MemberQuery]):
    return _page(request, query, is_staff=None)


@members_router.post(
    "/members/",
    response=responses({201: MemberOut}, s409=ErrorOut),
    operation_id="members_create",
    summary="Create a member",
    description=CREATE_DOC,
    tags=["members"],
)
def members_create(request: HttpRequest, payload: MemberIn):
    return _create(request, payload)


@members_router.get(
    "/members/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS),
    operation_id="members_get",
    summary="Get a member",
    description="Staff only.",
    tags=["members"],
)
def members_get(request: HttpRequest, id: int):
    return _member(id, is_staff=None)


@members_router.put(
    "/members/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
    operation_id="members_replace",
    summary="Replace a member",
    description=REPLACE_DOC,
    tags=["members"],
)
def members_replace(request: HttpRequest, id: int, payload: MemberIn):
    return _replace(request, id, payload, is_staff=None)


@members_router.patch(
    "/members/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
    operation_id="members_update",
    summary="Update a member",
    description=UPDATE_DOC,
    tags=["members"],
)
def members_update(request: HttpRequest, id: int, payload: MemberPatch):
    return _update(request, id, payload, is_staff=None)


@members_router.delete(
    "/members/{int:id}/",
    response=responses({204: None}, errors=OBJECT_ERRORS),
    operation_id="members_delete",
    summary="Delete a member",
    description=DELETE_DOC,
    tags=["members"],
)
def members_delete(request: HttpRequest, id: int):
    return _delete(request, id, is_staff=None)


# /staff/: staff users (no create: staff accounts are made under /members/)


@members_router.get(
    "/staff/",
    response=responses({200: MemberPage}),
    operation_id="staff_list",
    summary="List staff users",
    description=LIST_DOC,
    tags=["staff"],
)
def staff_list(request: HttpRequest, query: Query[MemberQuery]):
    return _page(request, query, is_staff=True)


@members_router.get(
    "/staff/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS),
    operation_id="staff_get",
    summary="Get a staff user",
    description="Staff only.",
    tags=["staff"],
)
def staff_get(request: HttpRequest, id: int):
    return _member(id, is_staff=True)


@members_router.put(
    "/staff/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
    operation_id="staff_replace",
    summary="Replace a staff user",
    description=REPLACE_DOC,
    tags=["staff"],
)
def staff_replace(request: HttpRequest, id: int, payload: MemberIn):
    return _replace(request, id, payload, is_staff=True)


@members_router.patch(
    "/staff/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
    operation_id="staff_update",
    summary="Update a staff user",
    description=UPDATE_DOC,
    tags=["staff"],
)
def staff_update(request: HttpRequest, id: int, payload: MemberPatch):
    return _update(request, id, payload, is_staff=True)


@members_router.delete(
    "/staff/{int:id}/",
    response=responses({204: None}, errors=OBJECT_ERRORS),
    operation_id="staff_delete",
    summary="Delete a staff user",
    description=DELETE_DOC,
    tags=["staff"],
)
def staff_delete(request: HttpRequest, id: int):
    return _delete(request, id, is_staff=True)


# /non-staff/: members without staff access


@members_router.get(
    "/non-staff/",
    response=responses({200: MemberPage}),
    operation_id="non_staff_list",
    summary="List non-staff members",
    description=LIST_DOC,
    tags=["non-staff"],
)
def non_staff_list(request: HttpRequest, query: Query[MemberQuery]):
    return _page(request, query, is_staff=False)


@members_router.post(
    "/non-staff/",
    response=responses({201: MemberOut}, s409=ErrorOut),
    operation_id="non_staff_create",
    summary="Create a non-staff member",
    description=CREATE_DOC,
    tags=["non-staff"],
)
def non_staff_create(request: HttpRequest, payload: MemberIn):
    return _create(request, payload, non_staff=True)


@members_router.get(
    "/non-staff/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS),
    operation_id="non_staff_get",
    summary="Get a non-staff member",
    description="Staff only.",
    tags=["non-staff"],
)
def non_staff_get(request: HttpRequest, id: int):
    return _member(id, is_staff=False)


@members_router.put(
    "/non-staff/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
    operation_id="non_staff_replace",
    summary="Replace a non-staff member",
    description=REPLACE_DOC,
    tags=["non-staff"],
)
def non_staff_replace(request: HttpRequest, id: int, payload: MemberIn):
    return _replace(request, id, payload, is_staff=False)


@members_router.patch(
    "/non-staff/{int:id}/",
    response=responses({200: MemberOut}, errors=OBJECT_ERRORS, s409=ErrorOut),
    operation_id="non_staff_update",
    summary="Update a non-staff member",
    description=UPDATE_DOC,
    tags=["non-staff"],
)
def non_staff_update(request: HttpRequest, id: int, payload: MemberPatch):
    return _update(request, id, payload, is_staff=False)


@members_router.delete(
    "/non-staff/{int:id}/",
    response=responses({204: None}, errors=OBJECT_ERRORS),
    operation_id="non_staff_delete",
    summary="Delete a non-staff member",
    description=DELETE_DOC,
    tags=["non-staff"],
)
def non_staff_delete(request: HttpRequest, id: int):
    return _delete(request, id, is_staff=False)


# --- mailing lists and segments ---------------------------------------------------------------------------

audiences_router = Router(auth=staff_auth)
AUDIENCE_LIST_DOC = (
    "Staff only. By name, paginated with `limit` (at most 500) and `offset`, or by following `next`."
)
AUDIENCE_ERRORS = {**OBJECT_ERRORS, 409: ErrorOut}


def _mailing_list(list_id: int) -> MailingList:
    return get_object_or_404(selectors.mailing_lists(), pk=list_id)


def _segment(segment_id: int) -> Segment:
    segment = get_object_or_404(selectors.segments(), pk=segment_id)
    segment.member_count = selectors.segment_counts([segment])[segment.pk]
    return segment


@audiences_router.get(
    "/lists/",
    response=responses({200: MailingListPage}),
    operation_id="lists_list",
    summary="List mailing lists",
    description=AUDIENCE_LIST_DOC,
    tags=["lists"],
)
def lists_list(request: HttpRequest, query: Query[PageQuery]):
    return paginate(selectors.mailing_lists(), query, request)


@audiences_router.post(
    "/lists/",
    response=responses({201: MailingListOut}, s409=ErrorOut),
    operation_id="lists_create",
    summary="Create a mailing list",
    description="Staff only. 409 when the name (case-insensitively) is taken.",
    tags=["lists"],
)
def lists_create(request: HttpRequest, payload: MailingListIn):
    return Status(201, services.mailing_list_create(**payload.model_dump()))


@audiences_router.get(
    "/lists/{int:id}/",
    response=responses({200: MailingListOut}, errors=OBJECT_ERRORS),
    operation_id="lists_get",
    summary="Get a mailing list",
    description="Staff only.",
    tags=["lists"],
)
def lists_get(request: HttpRequest, id: int):
    return _mailing_list(id)


@audiences_router.put(
    "/lists/{int:id}/",
    response=responses({200: MailingListOut}, errors=AUDIENCE_ERRORS),
    operation_id="lists_replace",
    summary="Replace a mailing list",
    description="Staff only. An omitted description becomes empty. 409 when the name is taken.",
    tags=["lists"],
)
def lists_replace(request: HttpRequest, id: int, payload: MailingListIn):
    _mailing_list(id)
    return services.mailing_list_update(list_id=id, **payload.model_dump())


@audiences_router.patch(
    "/lists/{int:id}/",
    response=responses({200: MailingListOut}, errors=AUDIENCE_ERRORS),
    operation_id="lists_update",
    summary="Update a mailing list",
    description="Staff only. Changes only the fields sent. 409 when the name is taken.",
    tags=["lists"],
)
def lists_update(request: HttpRequest, id: int, payload: MailingListPatch):
    _mailing_list(id)
    return services.mailing_list_update(list_id=id, **payload.model_dump(exclude_unset=True))


@audiences_router.delete(
    "/lists/{int:id}/",
    response=responses({204: None}, errors=AUDIENCE_ERRORS),
    operation_id="lists_delete",
    summary="Delete a mailing list",
    description="Staff only. The members stay; 409 while a scheduled, sending or paused burst addresses "
    "or excludes the list.",
    tags=["lists"],
)
def lists_delete(request: HttpRequest, id: int):
    _mailing_list(id)
    services.mailing_list_delete(list_id=id)
    return Status(204, None)


@audiences_router.get(
    "/lists/{int:id}/members/",
    response=responses({200: MemberPage}, errors=OBJECT_ERRORS),
    operation_id="lists_members",
    summary="List a mailing list's members",
    description="Staff only. Ordered by id, paginated like the member list; `count` is the list's counter.",
    tags=["lists"],
)
def lists_members(request: HttpRequest, id: int, query: Query[PageQuery]):
    mailing_list = _mailing_list(id)
    return paginate(selectors.list_members(list_id=id), query, request, count=mailing_list.member_count)


def _membership_answer(list_id: int, changed: int) -> dict[str, int]:
    return {"list_id": list_id, "changed": changed, "member_count": _mailing_list(list_id).member_count}


@audiences_router.post(
    "/lists/{int:id}/members/",
    response=responses({200: MembershipChangeOut}, errors=OBJECT_ERRORS),
    operation_id="lists_members_add",
    summary="Add members to a mailing list",
    description="Staff only. Idempotent: members already on the list stay. Unknown ids are a 422 listing them.",
    tags=["lists"],
)
def lists_members_add(request: HttpRequest, id: int, payload: MemberIdsIn):
    _mailing_list(id)
    return _membership_answer(id, services.list_members_add(list_id=id, member_ids=payload.members))


@audiences_router.post(
    "/lists/{int:id}/members/remove/",
    response=responses({200: MembershipChangeOut}, errors=OBJECT_ERRORS),
    operation_id="lists_members_remove",
    summary="Remove members from a mailing list",
    description="Staff only. Members not on the list are ignored. Unknown ids are a 422 listing them.",
    tags=["lists"],
)
def lists_members_remove(request: HttpRequest, id: int, payload: MemberIdsIn):
    _mailing_list(id)
    return _membership_answer(id, services.list_members_remove(list_id=id, member_ids=payload.members))


@audiences_router.get(
    "/segments/",
    response=responses({200: SegmentPage}),
    operation_id="segments_list",
    summary="List segments",
    description=AUDIENCE_LIST_DOC + " Each segment's `member_count` is counted now (one query for the page).",
    tags=["segments"],
)
def segments_list(request: HttpRequest, query: Query[PageQuery]):
    page = paginate(selectors.segments(), query, request)
    counts = selectors.segment_counts(page["items"])
    for segment in page["items"]:
        segment.member_count = counts[segment.pk]
    return page


@audiences_router.post(
    "/segments/",
    response=responses({201: SegmentOut}, s409=ErrorOut),
    operation_id="segments_create",
    summary="Create a segment",
    description="Staff only. A bad rule is a 422 naming the condition; 409 when the name is taken.",
    tags=["segments"],
)
def segments_create(request: HttpRequest, payload: SegmentIn):
    segment = services.segment_create(**payload.model_dump())
    return Status(201, _segment(segment.pk))


@audiences_router.get(
    "/segments/{int:id}/",
    response=responses({200: SegmentOut}, errors=OBJECT_ERRORS),
    operation_id="segments_get",
    summary="Get a segment",
    description="Staff only.",
    tags=["segments"],
)
def segments_get(request: HttpRequest, id: int):
    return _segment(id)


@audiences_router.put(
    "/segments/{int:id}/",
    response=responses({200: SegmentOut}, errors=AUDIENCE_ERRORS),
    operation_id="segments_replace",
    summary="Replace a segment",
    description="Staff only. A bad rule is a 422 naming the condition; 409 when the name is taken.",
    tags=["segments"],
)
def segments_replace(request: HttpRequest, id: int, payload: SegmentIn):
    _segment(id)
    services.segment_update(segment_id=id, **payload.model_dump())
    return _segment(id)


@audiences_router.patch(
    "/segments/{int:id}/",
    response=responses({200: SegmentOut}, errors=AUDIENCE_ERRORS),
    operation_id="segments_update",
    summary="Update a segment",
    description="Staff only. Changes only the fields sent; a bad rule is a 422 naming the condition.",
    tags=["segments"],
)
def segments_update(request: HttpRequest, id: int, payload: SegmentPatch):
    _segment(id)
    services.segment_update(segment_id=id, **payload.model_dump(exclude_unset=True))
    return _segment(id)


@audiences_router.delete(
    "/segments/{int:id}/",
    response=responses({204: None}, errors=AUDIENCE_ERRORS),
    operation_id="segments_delete",
    summary="Delete a segment",
    description="Staff only. 409 while a scheduled, sending or paused burst addresses or excludes it.",
    tags=["segments"],
)
def segments_delete(request: HttpRequest, id: int):
    _segment(id)
    services.segment_delete(segment_id=id)
    return Status(204, None)


@audiences_router.get(
    "/segments/{int:id}/members/",
    response=responses({200: MemberPage}, errors=OBJECT_ERRORS),
    operation_id="segments_members",
    summary="List a segment's members",
    description="Staff only. The members its rules select now, by id, paginated, with `count`.",
    tags=["segments"],
)
def segments_members(request: HttpRequest, id: int, query: Query[PageQuery]):
    segment = _segment(id)
    return paginate(
        selectors.segment_members(rules=segment.rules), query, request, count=segment.member_count
    )
