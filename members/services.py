"""Member services: create, update, delete, plus the API's login bookkeeping.

Keyword-only functions named ``<entity>_<action>``, shared by the API (and
anything else that changes members on a user's behalf). They raise the
``common.errors`` types (Forbidden, Conflict, InvalidInput, NotFound, Throttled);
the API answers each with its status.
The rights rule (who may change what on whom) lives here too and is what the
admin, the API and the import apply.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from django.contrib.auth import password_validation
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import EmptyResultSet
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from ninja_jwt.exceptions import InvalidToken, TokenError
from ninja_jwt.settings import api_settings
from ninja_jwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from ninja_jwt.tokens import RefreshToken, UntypedToken
from ninja_jwt.utils import datetime_from_epoch

from common.errors import Conflict, Forbidden, InvalidInput, NotFound, Throttled
from members import selectors
from members.models import ListMembership, MailingList, Member, MemberTally, Segment
from members.segments import rules_clean

logger = logging.getLogger(__name__)

# Fields a caller may set, and what a full replacement (PUT) resets them to.
MEMBER_DEFAULTS: dict[str, Any] = {
    "first_name": "",
    "middle_name": "",
    "last_name": "",
    "birth_date": None,
    "is_verified": False,
    "is_active": True,
}
PRIVILEGE_FIELDS = ("is_staff", "is_superuser")
WRITABLE_FIELDS = frozenset({"username", "email", *MEMBER_DEFAULTS, *PRIVILEGE_FIELDS})

# --- rights -----------------------------------------------------------------------------
#
# The one rule the admin, the API and the import apply. A superuser may change anything
# on anyone. Anyone else:
# - never changes is_staff, is_superuser, groups or permissions, on any member;
# - never changes the sign-in of a staff user or a superuser, themselves included: the
#   username and email (a password reset goes to the email), the password, is_active;
# - never changes or deletes a superuser at all, and never deletes a staff user.
# Nobody, superusers included, sets their *own* password without giving the current one:
# that is the admin's password change form (a stolen session must not lock the owner out).
# A plain (non-staff) member's password may be set by any staff member with the change
# permission: such an account reaches neither the admin nor the API.

RIGHTS_FIELDS = frozenset({*PRIVILEGE_FIELDS, "groups", "user_permissions"})
SIGN_IN_FIELDS = frozenset({"username", "email", "password", "is_active"})
OWN_PASSWORD_RULE = (
    "Your own password changes only with the current one: use the admin's password change "
    "page (/admin/password_change/)."
)


def member_is_privileged(*, member: Member) -> bool:
    """A staff user or a superuser (a superuser without is_staff counts too)."""
    return bool(member.is_staff or member.is_superuser)


def member_locked_fields(*, actor: Member, member: Member | None) -> frozenset[str]:
    """The fields ``actor`` may not change on ``member`` (``None``: a member being created)."""
    if actor.is_superuser:
        return frozenset()
    if member is not None and member_is_privileged(member=member):
        return RIGHTS_FIELDS | SIGN_IN_FIELDS
    return RIGHTS_FIELDS


def member_change_allowed(*, actor: Member, member: Member) -> bool:
    """Whether ``actor`` may change ``member`` at all (only a superuser changes a superuser)."""
    return bool(actor.is_superuser or not member.is_superuser)


def member_delete_allowed(*, actor: Member, member: Member) -> bool:
    """Only a superuser deletes a staff user or a superuser."""
    return bool(actor.is_superuser or not member_is_privileged(member=member))


def member_change_check(*, actor: Member, member: Member | None, changes: Iterable[str]) -> None:
    """Raise ``Forbidden`` naming the rule unless ``actor`` may make these changes.

    ``changes`` names the fields whose value would differ (``password`` when one is set);
    ``member`` is the stored member, ``None`` for a new one. Any write to a superuser by
    someone else is refused, even one that changes nothing.
    """
    changes = set(changes)
    if member is not None and "password" in changes and member.pk == actor.pk:
        raise Forbidden(OWN_PASSWORD_RULE, field="password")
    if member is not None and not member_change_allowed(actor=actor, member=member):
        raise Forbidden("Only a superuser may change a superuser.")
    locked = sorted(changes & member_locked_fields(actor=actor, member=member))
    if not locked:
        return
    name = locked[0]
    if name in RIGHTS_FIELDS:
        raise Forbidden(f"Only a superuser may change {name}.", field=name)
    raise Forbidden(f"Only a superuser may change the {name} of a staff user or a superuser.", field=name)


def _changed(member: Member, fields: dict[str, Any]) -> set[str]:
    """The fields whose value differs from the stored one (sending the current value is no change)."""
    return {name for name, value in fields.items() if getattr(member, name) != value}


def _check_unique(*, member: Member, fields: dict[str, Any]) -> None:
    others = Member.objects.exclude(pk=member.pk) if member.pk else Member.objects.all()
    if "email" in fields and others.filter(email__iexact=fields["email"]).exists():
        raise Conflict("A member with this email address already exists.", field="email")
    if "username" in fields and others.filter(username=fields["username"]).exists():
        raise Conflict("A member with this username already exists.", field="username")


def _set_password(member: Member, password: str | None) -> None:
    if password is None:
        return
    try:
        password_validation.validate_password(password, member)
    except DjangoValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None
    member.set_password(password)


def _save(member: Member) -> Member:
    try:
        with transaction.atomic():
            member.save()
    except IntegrityError:
        # A concurrent request took the address or username between the check and the insert.
        raise Conflict("A member with this email address or username already exists.") from None
    return member


def member_create(
    *,
    actor: Member,
    username: str,
    email: str,
    password: str | None = None,
    first_name: str = "",
    middle_name: str = "",
    last_name: str = "",
    birth_date: date | None = None,
    is_verified: bool = False,
    is_active: bool = True,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> Member:
    fields = {
        "username": username,
        "email": Member.objects.normalize_email(email),
        "first_name": first_name,
        "middle_name": middle_name,
        "last_name": last_name,
        "birth_date": birth_date,
        "is_verified": is_verified,
        "is_active": is_active,
        "is_staff": is_staff,
        "is_superuser": is_superuser,
    }
    member = Member(**fields)
    member_change_check(actor=actor, member=None, changes=_changed(Member(), fields))
    _check_unique(member=member, fields=fields)
    if password is None:
        member.set_unusable_password()
    else:
        _set_password(member, password)
    return _save(member)


def _locked(member: Member) -> Member:
    """The stored member, row-locked until the transaction ends: rights are decided on
    what is stored now, not on what the caller read earlier."""
    stored = Member.objects.select_for_update().filter(pk=member.pk).first()
    if stored is None:
        raise NotFound("Not Found")
    return stored


def member_update(*, actor: Member, member: Member, password: str | None = None, **fields: Any) -> Member:
    """Change the given fields (a PUT passes all of them, a PATCH only those sent), within
    the rights above: a refused change raises ``Forbidden`` and changes nothing."""
    unknown = set(fields) - WRITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"Unknown field(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    if "email" in fields:
        fields["email"] = Member.objects.normalize_email(fields["email"])
    with transaction.atomic():
        member = _locked(member)
        changes = _changed(member, fields) | ({"password"} if password is not None else set())
        member_change_check(actor=actor, member=member, changes=changes)
        _check_unique(member=member, fields=fields)
        for name, value in fields.items():
            setattr(member, name, value)
        _set_password(member, password)
        return _save(member)


def member_delete(*, actor: Member, member: Member) -> None:
    """Delete a member; their past deliveries stay, without the address (campaigns.signals)."""
    with transaction.atomic():
        member = _locked(member)
        if not member_delete_allowed(actor=actor, member=member):
            raise Forbidden("Only a superuser may delete a staff user or a superuser.")
        member.delete()


# --- login bookkeeping --------------------------------------------------------------

LOGIN_MAX_FAILURES = 10
LOGIN_WINDOW_SECONDS = 60


LOGIN_THROTTLED = "Too many failed login attempts. Try again later."


def _login_keys(*, username: str, ip: str) -> list[str]:
    digest = hashlib.sha256(username.casefold().encode("utf-8", "surrogatepass")).hexdigest()
    return [f"api-login-fail:user:{digest}", f"api-login-fail:ip:{ip}"]


# When the shared cache (Redis) is down or stalled, logins go on: the throttle counts
# in this process meanwhile, says so once in the log and in /api/health/, and tries
# the shared cache again after LOGIN_SHARED_RETRY seconds (a stalled Redis costs each
# call REDIS_TIMEOUT: asking it on every login would make logins wait that long).
LOGIN_SHARED_RETRY = 30
_LOCAL_COUNTS = LocMemCache("login-throttle-fallback", {"TIMEOUT": LOGIN_WINDOW_SECONDS})
_shared_failed_at: float | None = None


def _throttle_counts(operation: Callable[[Any], Any]) -> Any:
    """Run `operation(cache)` on the shared cache, or on this process's counts while
    the shared one does not answer."""
    global _shared_failed_at
    if _shared_failed_at is None or time.monotonic() - _shared_failed_at >= LOGIN_SHARED_RETRY:
        try:
            result = operation(cache)
        except Exception as exc:  # any cache failure: connection refused, timeout, ...
            if _shared_failed_at is None:
                logger.warning(
                    "login throttle: the shared cache does not answer (%s); counting per process",
                    type(exc).__name__,
                )
            _shared_failed_at = time.monotonic()
        else:
            if _shared_failed_at is not None:
                logger.warning("login throttle: the shared cache answers again")
            _shared_failed_at = None
            return result
    return operation(_LOCAL_COUNTS)


def login_throttle_mode() -> str:
    """ "shared" (every process counts together) or "per-process" (the shared cache did
    not answer lately): what /api/health/ reports."""
    return "shared" if _shared_failed_at is None else "per-process"


def login_throttle_check(*, username: str, ip: str) -> None:
    """Refuse a login attempt once a username or an address failed too often this minute."""
    keys = _login_keys(username=username, ip=ip)
    counts = _throttle_counts(lambda store: store.get_many(keys))
    if any(count >= LOGIN_MAX_FAILURES for count in counts.values()):
        raise Throttled(LOGIN_THROTTLED, wait=LOGIN_WINDOW_SECONDS)


def _count_failure(store: Any, keys: list[str]) -> None:
    for key in keys:
        # add() starts the window; incr() is atomic in every Django cache backend.
        store.add(key, 0, timeout=LOGIN_WINDOW_SECONDS)
        try:
            store.incr(key)
        except ValueError:  # expired between add() and incr()
            store.add(key, 1, timeout=LOGIN_WINDOW_SECONDS)


def login_failure_record(*, username: str, ip: str) -> None:
    keys = _login_keys(username=username, ip=ip)
    _throttle_counts(lambda store: _count_failure(store, keys))


def login_success_record(*, username: str) -> None:
    key = _login_keys(username=username, ip="-")[0]
    _throttle_counts(lambda store: store.delete(key))


# --- tokens ---------------------------------------------------------------------------


# A stamp of the member's password in every token (like Django's session auth hash):
# a password change voids the refresh tokens issued before it.
CREDENTIALS_CLAIM = "cred"


def _credentials_stamp(user: Member) -> str:
    return user.get_session_auth_hash()[:16]


def token_pair_for(*, user: Member) -> dict[str, str]:
    """A new refresh token and its access token, stamped with the member's password."""
    refresh = RefreshToken.for_user(user)
    refresh[CREDENTIALS_CLAIM] = _credentials_stamp(user)
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


def member_tokens_void(*, member_id: int) -> int:
    """Blacklist every refresh token the member holds (deactivation): one that is
    reactivated later does not get its old tokens back. Returns how many."""
    outstanding = OutstandingToken.objects.filter(user_id=member_id).exclude(blacklistedtoken__isnull=False)
    voided = [BlacklistedToken(token=token) for token in outstanding]
    BlacklistedToken.objects.bulk_create(voided, ignore_conflicts=True)
    return len(voided)


def token_refresh(*, refresh: str) -> dict[str, str]:
    """Exchange a refresh token for a new access token and a rotated refresh token.

    The used refresh token is blacklisted in the same transaction, and only one
    of two concurrent uses of one token succeeds. A deactivated or deleted
    member's refresh token is refused.
    """
    try:
        token = RefreshToken(refresh)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from None
    user = Member.objects.filter(pk=token.get(api_settings.USER_ID_CLAIM), is_active=True).first()
    if user is None:
        raise InvalidToken("User is inactive or does not exist")
    if token.get(CREDENTIALS_CLAIM) != _credentials_stamp(user):
        raise InvalidToken("Token is no longer valid: the password has changed since it was issued")
    with transaction.atomic():
        outstanding, _ = OutstandingToken.objects.get_or_create(
            jti=token[api_settings.JTI_CLAIM],
            defaults={"token": refresh, "user": user, "expires_at": datetime_from_epoch(token["exp"])},
        )
        _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
        if not created:
            raise InvalidToken("Token is blacklisted")
        return token_pair_for(user=user)


def token_verify(*, token: str) -> None:
    """Raise InvalidToken unless the token is valid, not blacklisted, and its member active."""
    try:
        decoded = UntypedToken(token)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from None
    if BlacklistedToken.objects.filter(token__jti=decoded.get(api_settings.JTI_CLAIM)).exists():
        raise InvalidToken("Token is blacklisted")
    user_id = decoded.get(api_settings.USER_ID_CLAIM)
    if user_id is None or not Member.objects.filter(pk=user_id, is_active=True).exists():
        raise InvalidToken("User is inactive or does not exist")


# --- bulk changes (the admin's actions) ---------------------------------------------------------


def members_mark_verified(*, members: QuerySet[Member]) -> int:
    """Mark members verified; returns how many changed."""
    return members.filter(is_verified=False).update(is_verified=True)


def members_unsubscribe(*, members: QuerySet[Member]) -> int:
    """Unsubscribe members (later bursts skip them); returns how many changed."""
    return members.filter(unsubscribed_at__isnull=True).update(unsubscribed_at=timezone.now())


def members_resubscribe(*, members: QuerySet[Member]) -> int:
    """Subscribe members again; returns how many changed."""
    return members.filter(unsubscribed_at__isnull=False).update(unsubscribed_at=None)


def member_tally_repair() -> bool:
    """Recount the member tally from the members (the triggers keep it; a restore or a
    hand edit of the tally could leave it wrong). True when it changed anything."""
    if _tally_kept() == selectors.member_tally_recount():
        return False  # looked at without a lock first: the common answer
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Member writes (their triggers) wait meanwhile: none is lost between the
            # recount and the rewrite.
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE members_membertally IN EXCLUSIVE MODE")
        actual = selectors.member_tally_recount()
        if _tally_kept() == actual:
            return False
        MemberTally.objects.all().delete()
        MemberTally.objects.bulk_create(
            MemberTally(is_staff=a, is_active=b, subscribed=c, is_verified=d, n=n)
            for (a, b, c, d), n in actual.items()
        )
    return True


def _tally_kept() -> dict[tuple[bool, bool, bool, bool], int]:
    return {
        (t.is_staff, t.is_active, t.subscribed, t.is_verified): t.n for t in MemberTally.objects.all() if t.n
    }


# --- mailing lists and segments -------------------------------------------------------------------------

AUDIENCE_NAME_MAX = 200
BUSY_BURST_STATUSES = ("scheduled", "sending", "paused")


def audience_name_check(
    model: type[MailingList] | type[Segment], name: str, *, exclude_pk: int | None = None
) -> str:
    """A list's or segment's name: one line, 1-200 characters, not taken (any case)."""
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("name is required", field="name")
    if len(name) > AUDIENCE_NAME_MAX:
        raise InvalidInput(f"name must be at most {AUDIENCE_NAME_MAX} characters", field="name")
    taken = (
        model.objects.filter(name__iexact=name).exclude(pk=exclude_pk).values_list("name", flat=True).first()
    )
    if taken is not None:
        raise Conflict(f"a {model._meta.verbose_name} named “{taken}” already exists", field="name")
    return name


def _in_use_check(what: str, bursts: QuerySet) -> None:
    """Refuse to delete a list or segment a burst still to be sent addresses."""
    busy = list(bursts.filter(status__in=BUSY_BURST_STATUSES).order_by("pk")[:3])
    if busy:
        names = ", ".join(f"“{b}” ({b.status})" for b in busy)
        raise Conflict(f"this {what} is the audience of a burst that is not finished: {names}")


def mailing_list_create(*, name: str, description: str = "") -> MailingList:
    try:
        return MailingList.objects.create(
            name=audience_name_check(MailingList, name), description=description or ""
        )
    except IntegrityError:  # taken between the check and the insert
        raise Conflict(f"a mailing list named “{name}” already exists", field="name") from None


def mailing_list_update(*, list_id: int, **fields: Any) -> MailingList:
    unknown = set(fields) - {"name", "description"}
    if unknown:
        raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    mailing_list = _get(MailingList, list_id)
    if fields.get("name") is not None:
        mailing_list.name = audience_name_check(MailingList, fields["name"], exclude_pk=list_id)
    if fields.get("description") is not None:
        mailing_list.description = fields["description"]
    mailing_list.save(update_fields=["name", "description"])
    return mailing_list


def mailing_list_delete(*, list_id: int) -> None:
    mailing_list = _get(MailingList, list_id)
    from campaigns.models import EmailBurst

    _in_use_check(
        "list", EmailBurst.objects.filter(Q(lists=mailing_list) | Q(exclude_lists=mailing_list)).distinct()
    )
    mailing_list.delete()


def _get(model: type, pk: int):
    try:
        return model.objects.get(pk=pk)
    except model.DoesNotExist:
        raise NotFound(f"{model._meta.verbose_name} {pk} does not exist") from None


def _member_ids_check(ids: Iterable[int]) -> list[int]:
    wanted = sorted(set(ids))
    found = set(Member.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise InvalidInput(f"unknown member ids: {', '.join(map(str, unknown[:50]))}", field="members")
    return wanted


def list_members_add(
    *, list_id: int, members: QuerySet[Member] | None = None, member_ids: Iterable[int] = ()
) -> int:
    """Put members on the list (those already on it stay as they are): the chosen ids,
    or every member of a queryset, in one `INSERT … SELECT`. Returns how many were added."""
    mailing_list = _get(MailingList, list_id)
    if members is None:
        members = Member.objects.filter(pk__in=_member_ids_check(member_ids))
    try:
        select, params = members.order_by().annotate(mid=F("pk")).values_list("mid").query.sql_with_params()
    except EmptyResultSet:  # nobody chosen
        return 0
    table = connection.ops.quote_name(ListMembership._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (member_id, list_id, added_at) "
            f"SELECT m.mid, %s, %s FROM ({select}) AS m WHERE true "
            "ON CONFLICT (list_id, member_id) DO NOTHING",
            [mailing_list.pk, timezone.now(), *params],
        )
        return max(cursor.rowcount, 0)


def list_members_remove(
    *, list_id: int, members: QuerySet[Member] | None = None, member_ids: Iterable[int] = ()
) -> int:
    """Take members off the list; returns how many were on it."""
    mailing_list = _get(MailingList, list_id)
    memberships = ListMembership.objects.filter(mailing_list=mailing_list)
    if members is None:
        memberships = memberships.filter(member_id__in=_member_ids_check(member_ids))
    else:
        memberships = memberships.filter(member_id__in=members.order_by().values("pk"))
    removed, _ = memberships.delete()
    return removed


def member_list_leave(*, member_id: int, list_id: int) -> bool:
    """A member leaves one list (the preference page); True when they were on it."""
    removed, _ = ListMembership.objects.filter(member_id=member_id, mailing_list_id=list_id).delete()
    return bool(removed)


def mailing_list_counts_repair() -> list[str]:
    """Recount every list's members (the triggers keep the counts); says what changed."""
    changed = []
    actual = selectors.mailing_list_member_recount()
    for mailing_list in MailingList.objects.all():
        n = actual.get(mailing_list.pk, 0)
        if mailing_list.member_count != n:
            changed.append(f"{mailing_list.name}: {mailing_list.member_count} -> {n}")
            MailingList.objects.filter(pk=mailing_list.pk).update(member_count=n)
    return changed


def segment_create(*, name: str, rules: Any, description: str = "") -> Segment:
    clean = rules_clean(rules)
    try:
        return Segment.objects.create(
            name=audience_name_check(Segment, name), description=description or "", rules=clean
        )
    except IntegrityError:
        raise Conflict(f"a segment named “{name}” already exists", field="name") from None


def segment_update(*, segment_id: int, **fields: Any) -> Segment:
    unknown = set(fields) - {"name", "description", "rules"}
    if unknown:
        raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    segment = _get(Segment, segment_id)
    if fields.get("name") is not None:
        segment.name = audience_name_check(Segment, fields["name"], exclude_pk=segment_id)
    if fields.get("description") is not None:
        segment.description = fields["description"]
    if fields.get("rules") is not None:
        segment.rules = rules_clean(fields["rules"])
    segment.save()
    return segment


def segment_delete(*, segment_id: int) -> None:
    segment = _get(Segment, segment_id)
    from campaigns.models import EmailBurst

    _in_use_check(
        "segment", EmailBurst.objects.filter(Q(segments=segment) | Q(exclude_segments=segment)).distinct()
    )
    segment.delete()
