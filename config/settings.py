"""Emailer settings.

The environment is read here, once, so a mistake shows at start-up. Every value has a safe
development default; a bad value stops start-up with a message naming the
variable instead of failing later in a worker.
"""

from __future__ import annotations

import hashlib
import math
import zoneinfo
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import EmailValidator

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def _number(name: str, default: float | None, *, cast=int, minimum: float = 0, allow_zero: bool = True):
    raw = env.str(name, default="").strip()
    if raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ImproperlyConfigured(f"{name} must be {kind}, got {raw!r}") from None
    if value < minimum or (not allow_zero and value == 0):
        bound = f"greater than {minimum}" if not allow_zero else f"at least {minimum}"
        raise ImproperlyConfigured(f"{name} must be {bound}, got {raw!r}")
    return value


def _list(name: str, default: list[str]) -> list[str]:
    raw = env.str(name, default="")
    if raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _email(name: str, value: str) -> str:
    try:
        EmailValidator()(value)
    except ValidationError:
        raise ImproperlyConfigured(f"{name} must be an email address, got {value!r}") from None
    return value


# --- core -------------------------------------------------------------------

DEBUG = _bool("DEBUG", False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off (set DEBUG=1 for development).")
    SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production-emailer"

ALLOWED_HOSTS = _list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = _list(
    "CSRF_TRUSTED_ORIGINS",
    ["http://127.0.0.1:8000", "http://localhost:8000"] if DEBUG else [],
)

SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = _number("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if _bool("SECURE_PROXY_SSL_HEADER", False) else None
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy on every response; the policies and why: config/security.py.
from config.security import CONTENT_SECURITY_POLICY  # noqa: E402,F401

INSTALLED_APPS = [
    # unfold and its contribs must come before django.contrib.admin and import_export
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "csp",
    "huey.contrib.djhuey",
    "ninja",
    "ninja_extra",
    "ninja_jwt",
    "ninja_jwt.token_blacklist",
    "members",
    "campaigns",
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: its process_exception sees a view's error first (503 for a stalled service).
    "config.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------

# PostgreSQL only (SQLite has no server to stall; its busy timeout below stays 30 s):
# seconds to connect, and the server's statement_timeout; a connection that answers
# nothing for DATABASE_TIMEOUT + DATABASE_STALL_GRACE seconds (a stalled server or
# network, which no server-side limit sees) is closed and the call fails. 0 lifts the
# statement limit and the stall cut for one long maintenance run (connecting still gives
# up after 10 s), e.g. `DATABASE_TIMEOUT=0 python manage.py migrate` on a large table.
DATABASE_TIMEOUT = _number("DATABASE_TIMEOUT", 10.0, cast=float)
if 0 < DATABASE_TIMEOUT < 2:
    raise ImproperlyConfigured(
        f"DATABASE_TIMEOUT must be 0 (no statement limit) or at least 2 seconds, got {DATABASE_TIMEOUT:g}"
    )
# The server's own statement_timeout fires first (a clear error, the connection kept);
# the client's cut is for when nothing comes back at all.
DATABASE_STALL_GRACE = 2.0

try:
    DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL", default="sqlite:///db.sqlite3"))}
except (ImproperlyConfigured, KeyError, ValueError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a supported database URL: {exc}") from None

_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] != ":memory:" and not Path(_db["NAME"]).is_absolute():
        _db["NAME"] = str(BASE_DIR / _db["NAME"])
    _db.setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web process read while a worker writes; IMMEDIATE
            # transactions plus a busy timeout make concurrent writers wait
            # for each other instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # A file (not pytest-django's in-memory default) so that a run_huey
    # subprocess started by a test sees the same test database.
    _db["TEST"] = {"NAME": str(Path(_db["NAME"]).with_name("test_" + Path(_db["NAME"]).name))}
    if _db["NAME"] == ":memory:":
        _db["TEST"] = {}
elif _db["ENGINE"] in {"django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"}:
    # Django's backend with connections that give up on a stalled server (common/db/postgresql).
    _db["ENGINE"] = "common.db.postgresql"
    _db["CONN_MAX_AGE"] = _number("CONN_MAX_AGE", 0)
    _db["CONN_HEALTH_CHECKS"] = True
    # No JIT: it compiles each large statement anew (350 ms of a 390 ms batch of
    # delivery creation) and this application's statements are short or one-off.
    _pg_options = _db.setdefault("OPTIONS", {})
    if "jit" not in _pg_options.get("options", ""):
        _pg_options["options"] = f"{_pg_options.get('options', '')} -c jit=off".strip()
    # DATABASE_URL's own ?connect_timeout= or -c statement_timeout= win.
    _pg_options.setdefault("connect_timeout", math.ceil(DATABASE_TIMEOUT) or 10)
    if "statement_timeout" not in _pg_options["options"]:
        _pg_options["options"] += f" -c statement_timeout={round(DATABASE_TIMEOUT * 1000)}"
    _pg_options["stall_timeout"] = DATABASE_TIMEOUT + DATABASE_STALL_GRACE if DATABASE_TIMEOUT else None
else:
    raise ImproperlyConfigured(f"DATABASE_URL must point at SQLite or PostgreSQL, got engine {_db['ENGINE']}")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "members.Member"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/admin/"

# --- i18n / time ------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"TIME_ZONE must be an IANA time zone such as Europe/Paris, got {TIME_ZONE!r}"
    ) from None
USE_I18N = True
USE_TZ = True

# --- static and media ---------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed but not manifest storage: pages work without a collectstatic
    # first (tests, a fresh clone); production runs collectstatic anyway.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = _number("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)
ATTACHMENT_MAX_SIZE = _number("ATTACHMENT_MAX_SIZE", 10 * 1024 * 1024, minimum=1)
# Per burst: every message carries every attachment, so the sum is what each message weighs.
ATTACHMENT_MAX_COUNT = _number("ATTACHMENT_MAX_COUNT", 20, minimum=1)
ATTACHMENT_MAX_TOTAL = _number("ATTACHMENT_MAX_TOTAL", 25 * 1024 * 1024, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# A member import uploaded in the admin; bigger files go through `manage.py import_members`.
IMPORT_MAX_UPLOAD = _number("IMPORT_MAX_UPLOAD", 10 * 1024 * 1024, minimum=1)

# --- email --------------------------------------------------------------------

SENDER_EMAIL = _email("SENDER_EMAIL", env.str("SENDER_EMAIL", default="noreply@localhost"))
SENDER_PASSWORD = env.str("SENDER_PASSWORD", default="")

# Providers the older version's `.env` (SENDER_EMAIL + SENDER_PASSWORD only) relied on.
PROVIDER_SMTP = {
    "gmail.com": "smtp+tls://smtp.gmail.com:587",
    "googlemail.com": "smtp+tls://smtp.gmail.com:587",
    "outlook.com": "smtp+tls://smtp.office365.com:587",
    "hotmail.com": "smtp+tls://smtp.office365.com:587",
    "live.com": "smtp+tls://smtp.office365.com:587",
    "yahoo.com": "smtp+ssl://smtp.mail.yahoo.com:465",
}
DEV_SINK_URL = "smtp://127.0.0.1:1025"

_email_url = env.str("EMAIL_URL", default="").strip()
if not _email_url:
    if env.str("SENDER_PASSWORD", default="") and "SENDER_EMAIL" in env.ENVIRON:
        _domain = SENDER_EMAIL.rsplit("@", 1)[1].lower()
        if _domain not in PROVIDER_SMTP:
            raise ImproperlyConfigured(
                f"SENDER_EMAIL and SENDER_PASSWORD are set but EMAIL_URL is not, and the SMTP server "
                f"for {_domain!r} is not known. Set EMAIL_URL, e.g. smtp+tls://smtp.{_domain}:587"
            )
        _email_url = PROVIDER_SMTP[_domain]
    else:
        _email_url = DEV_SINK_URL

if urlsplit(_email_url).scheme not in {"smtp", "smtp+tls", "smtp+ssl", "smtps"}:
    raise ImproperlyConfigured("EMAIL_URL must start with smtp://, smtp+tls:// or smtp+ssl://")
try:
    _email_config = env.email_url_config(_email_url)
except (ImproperlyConfigured, ValueError) as exc:
    # The URL may hold a password: never echo it.
    raise ImproperlyConfigured(f"EMAIL_URL is not a valid SMTP URL ({type(exc).__name__})") from None

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = _email_config.get("EMAIL_HOST") or "127.0.0.1"
EMAIL_USE_TLS = bool(_email_config.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email_config.get("EMAIL_USE_SSL")) or urlsplit(_email_url).scheme == "smtps"
EMAIL_PORT = _email_config.get("EMAIL_PORT") or (465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25)
EMAIL_HOST_USER = _email_config.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email_config.get("EMAIL_HOST_PASSWORD") or ""
if not EMAIL_HOST_USER and not EMAIL_HOST_PASSWORD:
    EMAIL_HOST_USER = SENDER_EMAIL
    EMAIL_HOST_PASSWORD = SENDER_PASSWORD
EMAIL_TIMEOUT = _number("EMAIL_TIMEOUT", 30.0, cast=float, allow_zero=False)
DEFAULT_FROM_EMAIL = SENDER_EMAIL
SERVER_EMAIL = SENDER_EMAIL

EMAIL_RATE_LIMIT = _number("EMAIL_RATE_LIMIT", None, cast=float, allow_zero=False)
EMAIL_CHUNK_SIZE = _number("EMAIL_CHUNK_SIZE", 200, minimum=1)
EMAIL_MAX_ATTEMPTS = _number("EMAIL_MAX_ATTEMPTS", 4, minimum=1)
EMAIL_RETRY_DELAY = _number("EMAIL_RETRY_DELAY", 60.0, cast=float)
EMAIL_CLAIM_TIMEOUT = _number("EMAIL_CLAIM_TIMEOUT", 300.0, cast=float, allow_zero=False)
# Where each chunk journals its outcomes before they reach the database (a local,
# persistent folder of each worker host; campaigns/engine/journal.py says why).
EMAIL_JOURNAL_DIR = Path(env.str("EMAIL_JOURNAL_DIR", default=str(BASE_DIR / "var" / "journal")))
EMAIL_PAUSE_AFTER = _number("EMAIL_PAUSE_AFTER", 10, minimum=1)
# Burst templates render under limits no input can pass (campaigns/templating.py): staff-written
# templates run in the web process and the workers.
TEMPLATE_MAX_SIZE = _number("TEMPLATE_MAX_SIZE", 1_000_000, minimum=1000)
TEMPLATE_MAX_LOOP_ITERATIONS = _number("TEMPLATE_MAX_LOOP_ITERATIONS", 10_000, minimum=1)
TEMPLATE_RENDER_TIMEOUT = _number("TEMPLATE_RENDER_TIMEOUT", 1.0, cast=float, allow_zero=False)
# /api/health/ calls a consumer stuck when one chunk task has run this long.
WORKER_STUCK_AFTER = _number("WORKER_STUCK_AFTER", 2 * EMAIL_CLAIM_TIMEOUT, cast=float, allow_zero=False)
# Mailbox for List-Unsubscribe's mailto: form; the https form is always sent.
UNSUBSCRIBE_MAILTO = env.str("UNSUBSCRIBE_MAILTO", default="")
if UNSUBSCRIBE_MAILTO:
    _email("UNSUBSCRIBE_MAILTO", UNSUBSCRIBE_MAILTO)

# Who sends the bursts: named on the unsubscribe pages members see.
ORGANISATION_NAME = env.str("ORGANISATION_NAME", default="").strip() or "Emailer"

SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
if urlsplit(SITE_URL).scheme not in {"http", "https"} or not urlsplit(SITE_URL).netloc:
    raise ImproperlyConfigured(f"SITE_URL must be an absolute http(s) URL, got {SITE_URL!r}")

# --- bounces and complaints ------------------------------------------------------


def _imap_url(name: str) -> dict | None:
    """The bounce mailbox, from imaps://user:password@host:993/INBOX (imap:// for a local
    server). Errors never echo the URL: it holds a password."""
    raw = env.str(name, default="").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} is not a valid URL (expected imaps://user:password@host:993/INBOX)"
        ) from None
    if parts.scheme not in {"imap", "imaps"}:
        raise ImproperlyConfigured(f"{name} must start with imaps:// (or imap:// for a local server)")
    if not parts.hostname or not parts.username or parts.password is None:
        raise ImproperlyConfigured(
            f"{name} must name a user, a password and a host: imaps://user:password@host/INBOX"
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name} takes no ?query or #fragment")
    secure = parts.scheme == "imaps"
    return {
        "host": parts.hostname,
        "port": port or (993 if secure else 143),
        "ssl": secure,
        "user": unquote(parts.username),
        "password": unquote(parts.password),
        "mailbox": unquote(parts.path.lstrip("/")) or "INBOX",
    }


# Polled every minute by campaigns.tasks.poll_bounce_mailbox; None: no mailbox.
BOUNCE_IMAP = _imap_url("BOUNCE_IMAP_URL")
# ESP webhooks (django-anymail) under /webhooks/anymail/: basic auth "user:password"
# (required), plus the ESP's own signing key where it signs.
ANYMAIL = {
    "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default="").strip() or None,
    "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default="").strip() or None,
    "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": (
        env.str("SENDGRID_WEBHOOK_VERIFICATION_KEY", default="").strip() or None
    ),
}
ANYMAIL = {key: value for key, value in ANYMAIL.items() if value}
if "WEBHOOK_SECRET" in ANYMAIL and ":" not in ANYMAIL["WEBHOOK_SECRET"]:
    raise ImproperlyConfigured("ANYMAIL_WEBHOOK_SECRET must be user:password (the webhooks' basic auth)")

# --- huey ---------------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="").strip()
# Seconds a Redis call may take (connecting, or waiting for an answer) before it fails.
REDIS_TIMEOUT = _number("REDIS_TIMEOUT", 5.0, cast=float, minimum=2)
HUEY_WORKERS = _number("HUEY_WORKERS", 2, minimum=1)
# Process workers by default: sending is CPU-bound Python (building MIME), and threads
# share one interpreter lock; measured about twice the rate on two cores (`make bench`).
HUEY_WORKER_TYPE = env.str("HUEY_WORKER_TYPE", default="process")
if HUEY_WORKER_TYPE not in {"thread", "process"}:
    raise ImproperlyConfigured(f"HUEY_WORKER_TYPE must be 'thread' or 'process', got {HUEY_WORKER_TYPE!r}")
# Never derived from DEBUG: tests switch huey to immediate mode in a fixture.
HUEY_IMMEDIATE = _bool("HUEY_IMMEDIATE", False)


def _queue_name(database: dict) -> str:
    """The huey queue's name for this deployment: derived from its database, so that
    deployments sharing one Redis database never take each other's tasks (their
    ids mean nothing in the other database). `HUEY_NAME` overrides it."""
    identity = "|".join(str(database.get(key) or "") for key in ("ENGINE", "HOST", "PORT", "NAME"))
    return "emailer-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


HUEY_NAME = env.str("HUEY_NAME", default="").strip() or _queue_name(_db)


def _with_timeouts(url: str, seconds: float) -> str:
    """The Redis URL with socket timeouts redis-py reads from its query, unless given."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(seconds))
    query.setdefault("socket_connect_timeout", str(seconds))
    return urlunsplit(parts._replace(query=urlencode(query)))


if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": HUEY_NAME,
        "immediate": HUEY_IMMEDIATE,
        # A stalled Redis fails a call after REDIS_TIMEOUT instead of hanging it (more
        # than the consumer's 1 s blocking read, which would otherwise time out).
        "url": _with_timeouts(REDIS_URL, REDIS_TIMEOUT),
        "utc": True,
    }
else:
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": HUEY_NAME,
        "immediate": HUEY_IMMEDIATE,
        "filename": env.str("HUEY_SQLITE_PATH", default=str(BASE_DIR / "huey.sqlite3")),
        "utc": True,
    }
# With Redis, the cache (the login throttle's counters) is shared by every web
# process on every machine; without it each process counts for itself.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{HUEY_NAME}-cache",
            "OPTIONS": {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT},
        }
    }

HUEY["consumer"] = {
    "workers": HUEY_WORKERS,
    "worker_type": HUEY_WORKER_TYPE,
    "periodic": True,
    "check_worker_health": True,
    "health_check_interval": 5,
}

# --- API ------------------------------------------------------------------------

from datetime import timedelta  # noqa: E402

NINJA_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
}
NINJA_PAGINATION_MAX_LIMIT = 500
# How many reverse proxies in front of the web processes set X-Forwarded-For
# (the login throttle counts failures per client address).
TRUSTED_PROXY_COUNT = _number("TRUSTED_PROXY_COUNT", 0)

# --- logging --------------------------------------------------------------------

# Our loggers do not propagate to the root: run_huey adds its own handler to
# the root logger, and every line would otherwise be printed twice.
_app_logger = {"handlers": ["console"], "level": "INFO", "propagate": False}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": _app_logger,
        "huey": _app_logger,
        "campaigns": _app_logger,
        "members": _app_logger,
        "devtools": _app_logger,
        "config": _app_logger,
        # One of flufl.bounce's detectors crashing on an odd message is logged there
        # with a traceback; the parser carries on with the others (and says unparsed).
        "flufl.bounce": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}

# --- admin (django-unfold) ----------------------------------------------------------

from django.urls import reverse_lazy  # noqa: E402

# Mailing first (room for lists and segments); Django's groups and the API's sign-in
# tokens are accounts, not mailing: a section of their own, for superusers only.
_MAILING_NAVIGATION = {
    "title": "Mailing",
    "items": [
        {"title": "Dashboard", "icon": "dashboard", "link": reverse_lazy("admin:index")},
        {
            "title": "Email bursts",
            "icon": "campaign",
            "link": reverse_lazy("admin:campaigns_emailburst_changelist"),
            "permission": lambda request: request.user.has_perm("campaigns.view_emailburst"),
        },
        {
            "title": "Deliveries",
            "icon": "outgoing_mail",
            "link": reverse_lazy("admin:campaigns_delivery_changelist"),
            "permission": lambda request: request.user.has_perm("campaigns.view_delivery"),
        },
        {
            "title": "Members",
            "icon": "group",
            "link": reverse_lazy("admin:members_member_changelist"),
            "permission": lambda request: request.user.has_perm("members.view_member"),
        },
        {
            "title": "Mailing lists",
            "icon": "format_list_bulleted",
            "link": reverse_lazy("admin:members_mailinglist_changelist"),
            "permission": lambda request: request.user.has_perm("members.view_mailinglist"),
        },
        {
            "title": "Segments",
            "icon": "filter_alt",
            "link": reverse_lazy("admin:members_segment_changelist"),
            "permission": lambda request: request.user.has_perm("members.view_segment"),
        },
        {
            "title": "Mail events",
            "icon": "unsubscribe",
            "link": reverse_lazy("admin:campaigns_mailevent_changelist"),
            "permission": lambda request: request.user.has_perm("campaigns.view_mailevent"),
        },
        {
            "title": "Suppressions",
            "icon": "block",
            "link": reverse_lazy("admin:members_suppression_changelist"),
            "permission": lambda request: request.user.has_perm("members.view_suppression"),
        },
    ],
}
_ADMINISTRATION_NAVIGATION = {
    "title": "Administration",
    "separator": True,
    "items": [
        {
            "title": "Permission groups",
            "icon": "shield_person",
            "link": reverse_lazy("admin:auth_group_changelist"),
        },
        {
            "title": "Outstanding API tokens",
            "icon": "key",
            "link": reverse_lazy("admin:token_blacklist_outstandingtoken_changelist"),
        },
        {
            "title": "Blacklisted API tokens",
            "icon": "key_off",
            "link": reverse_lazy("admin:token_blacklist_blacklistedtoken_changelist"),
        },
    ],
}


def _sidebar_navigation(request) -> list[dict]:
    if request.user.is_superuser:
        return [_MAILING_NAVIGATION, _ADMINISTRATION_NAVIGATION]
    return [_MAILING_NAVIGATION]


UNFOLD = {
    "SITE_TITLE": "Emailer",
    "SITE_HEADER": "Emailer",
    "SITE_SUBHEADER": "Email bursts to members",
    "SITE_SYMBOL": "mail",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "campaigns.admin.dashboard.dashboard_callback",
    "SIDEBAR": {
        "show_search": True,
        # Every page is in the navigation below: the full application list would show
        # Django's groups and the API's token tables to everyone as if they were mailing features.
        "show_all_applications": False,
        "navigation": _sidebar_navigation,
    },
}
