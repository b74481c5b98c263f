"""Settings, all from environment variables, with an embedded default that needs no server.

With no variables set: SQLite under var/, media under var/media/, Celery over kombu's filesystem
transport under var/celery/ (consumed by a real, separate worker process). The variables are
documented in the README ("Configuration").
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1 or 0")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


VAR_DIR = Path(env_str("MERSV_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Production mode switches on every protection `check --deploy` asks for.
PRODUCTION = env_bool("MERSV_PRODUCTION", False)
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG=1 is not allowed with MERSV_PRODUCTION=1")


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY", "")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("MERSV_PRODUCTION=1 needs DJANGO_SECRET_KEY (50+ random chars)")
    # Embedded default: a random key made once per installation, never a key in the code.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens: hashed at rest, expiring (annotation/access/tokens.py)
    "drf_spectacular",
    "annotation",
    "datasets",
    "modeling",
    "frontend",
]

MIDDLEWARE = [
    # Outermost, so that every response (redirects and static files included) gets the headers.
    "frontend.middleware.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a body: oversized requests are refused from their headers.
    "frontend.middleware.RequestSizeLimitMiddleware",
    # Before sessions and views: NUL in a path, query, cookie or form is a 400 (input bounds).
    "frontend.input_bounds.InputBoundsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "frontend.middleware.SessionIdleTimeoutMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'mersv.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
# Behind PgBouncer in transaction mode (docker/compose.hosts.yml) a cursor may not outlive its
# transaction: Django then reads .iterator() querysets without server-side cursors.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool(
    "DATABASE_DISABLE_SERVER_SIDE_CURSORS", False
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write to one file: WAL lets readers run beside a writer,
    # IMMEDIATE takes the write lock at BEGIN so two writers queue instead of deadlocking.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# ---- Accounts: client address, login throttle, API tokens (annotation/access/) ----------
# The client's address (annotation/access/client_address.py): X-Forwarded-For is read only
# when the peer is one of these reverse proxies (addresses or CIDRs, comma-separated); empty:
# REMOTE_ADDR is the client.
TRUSTED_PROXIES = env_list("MERSV_TRUSTED_PROXIES", "")
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"MERSV_TRUSTED_PROXIES: {_proxy!r} is not an IP address or CIDR (e.g. 172.16.0.0/12)"
        ) from None
# Failed logins (annotation/access/login_throttle.py). Beyond a limit, each further attempt
# waits MERSV_LOGIN_DELAY_S, doubling per failure up to MERSV_LOGIN_DELAY_MAX_S; the right
# password is never refused for good. Limits: per (account, address), per account from
# addresses it never logged in from, and per address (password spraying; an account's known
# addresses are exempt). A count starts over after MERSV_LOGIN_WINDOW_S without failures.
AUTHENTICATION_BACKENDS = ["annotation.access.login_throttle.ThrottledModelBackend"]
LOGIN_MAX_FAILURES = env_int("MERSV_LOGIN_MAX_FAILURES", 5)
LOGIN_MAX_FAILURES_PER_ACCOUNT = env_int("MERSV_LOGIN_MAX_FAILURES_PER_ACCOUNT", 20)
LOGIN_MAX_FAILURES_PER_IP = env_int("MERSV_LOGIN_MAX_FAILURES_PER_IP", 20)
LOGIN_WINDOW_S = env_int("MERSV_LOGIN_WINDOW_S", 15 * 60)
LOGIN_DELAY_S = env_int("MERSV_LOGIN_DELAY_S", 30)
LOGIN_DELAY_MAX_S = env_int("MERSV_LOGIN_DELAY_MAX_S", 15 * 60)
# An address an account logged in from stays "known" to it this long.
LOGIN_KNOWN_ADDRESS_DAYS = env_int("MERSV_LOGIN_KNOWN_ADDRESS_DAYS", 30)
# API tokens (django-rest-knox; annotation/access/tokens.py): stored as a SHA-512 hash, each
# with a name (one per device), expiring after MERSV_TOKEN_TTL_HOURS; at most
# MERSV_TOKEN_MAX_PER_USER live tokens per account. Sent as `Authorization: Token <token>`.
TOKEN_TTL_HOURS = env_int("MERSV_TOKEN_TTL_HOURS", 7 * 24)
TOKEN_MAX_PER_USER = env_int("MERSV_TOKEN_MAX_PER_USER", 20)
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=TOKEN_TTL_HOURS),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
# ---- end of accounts ---------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve app static files straight from the apps too, so tests and the demo need no collectstatic.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MERSV_MEDIA_ROOT", str(VAR_DIR / "media")))
EXPORT_ROOT = Path(env_str("MERSV_EXPORT_ROOT", str(VAR_DIR / "exports")))

# ---- Object storage (annotation/storage.py) -------------------------------------------------
# Unset: media, exports and training checkpoints live in the folders above (the embedded
# default). MERSV_STORAGE_URL=s3://bucket/prefix puts them in an S3-compatible bucket
# (django-storages with boto3) under prefix/media/, prefix/exports/ and prefix/runs/; the
# endpoint variables name a MinIO or other S3 API. Workers then need no shared folder: each
# keeps a bounded local cache (MERSV_CACHE_MB) of what it materialised, keyed by content hash.
STORAGE_URL = env_str("MERSV_STORAGE_URL", "")
S3_ENDPOINT_URL = env_str("MERSV_S3_ENDPOINT_URL", "")
S3_REGION = env_str("MERSV_S3_REGION", "us-east-1")
S3_ACCESS_KEY_ID = env_str("MERSV_S3_ACCESS_KEY_ID", "")
S3_SECRET_ACCESS_KEY = env_str("MERSV_S3_SECRET_ACCESS_KEY", "")
# Presigned URLs (media redirects, export downloads, upload parts) expire after this long.
S3_URL_EXPIRE_S = env_int("MERSV_S3_URL_EXPIRE_S", 3600)
# The local cache of a web process or worker with object storage: at most this many MB, the
# least recently used entries removed first (the entry being used is never removed).
CACHE_ROOT = Path(env_str("MERSV_CACHE_ROOT", str(VAR_DIR / "cache")))
CACHE_MB = env_int("MERSV_CACHE_MB", 20 * 1024)
# Frozen exports materialised on this host (training workers): at most this many MB.
EXPORT_CACHE_MB = env_int("MERSV_EXPORT_CACHE_MB", 20 * 1024)
# An export download with object storage: "redirect" (a presigned URL to the verified
# archive) or "proxy" (streamed through the web process from a verified local copy, for a
# bucket the browsers cannot reach).
EXPORT_DOWNLOAD = env_str("MERSV_EXPORT_DOWNLOAD", "redirect")
if EXPORT_DOWNLOAD not in ("redirect", "proxy"):
    raise ImproperlyConfigured(f"MERSV_EXPORT_DOWNLOAD={EXPORT_DOWNLOAD!r}: use redirect or proxy")
# The origins whose pages PUT upload parts straight to the bucket: `manage.py storage_cors`
# writes the bucket's CORS rule for them and `check --deploy` (mersv.W110) checks it.
STORAGE_CORS_ORIGINS = env_list("MERSV_STORAGE_CORS_ORIGINS", "") or list(CSRF_TRUSTED_ORIGINS)
# Uploads straight to the bucket (presigned multipart): the largest file accepted and the
# size of each part the browser sends (S3 wants parts of 5 MB or more, except the last).
DIRECT_UPLOAD_MAX_MB = env_int("MERSV_DIRECT_UPLOAD_MAX_MB", 4096)
DIRECT_UPLOAD_PART_MB = env_int("MERSV_DIRECT_UPLOAD_PART_MB", 16)
if DIRECT_UPLOAD_PART_MB < 5:
    raise ImproperlyConfigured("MERSV_DIRECT_UPLOAD_PART_MB must be at least 5 (S3's minimum part)")
# An open upload with no part sent for this many hours is abandoned: its multipart upload is
# aborted (the bucket stops keeping its parts) and its row marked expired, hourly by the beat
# (annotation.tasks.prune_direct_uploads) or by `manage.py uploads_prune`. A resumed upload
# signs fresh part URLs, so this bounds the idle time, not an upload's length.
DIRECT_UPLOAD_TTL_HOURS = env_int("MERSV_DIRECT_UPLOAD_TTL_HOURS", 24)
if DIRECT_UPLOAD_TTL_HOURS < 1:
    raise ImproperlyConfigured("MERSV_DIRECT_UPLOAD_TTL_HOURS must be at least 1 (hours)")


def storages_setting(
    storage_url: str,
    *,
    endpoint_url: str = "",
    region: str = "us-east-1",
    access_key: str = "",
    secret_key: str = "",
    url_expire_s: int = 3600,
    media_url: str = "/media/",
) -> dict[str, dict[str, object]]:
    """STORAGES for a MERSV_STORAGE_URL ("" = the local folders); tests call it too."""
    local = "django.core.files.storage.FileSystemStorage"
    static: dict[str, object] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    if not storage_url:
        # Media keep following MEDIA_ROOT (tests move it per test); exports and runs are read
        # through EXPORT_ROOT and TRAINING_RUNS_ROOT directly in this mode.
        return {
            "default": {"BACKEND": local},
            "exports": {"BACKEND": local, "OPTIONS": {"location": str(EXPORT_ROOT)}},
            "runs": {"BACKEND": local, "OPTIONS": {"location": str(TRAINING_RUNS_ROOT)}},
            "staticfiles": static,
        }
    scheme, _, rest = storage_url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise ImproperlyConfigured(
            f"MERSV_STORAGE_URL={storage_url!r} is not s3://bucket/prefix (e.g. s3://mersv/lab1)"
        )
    prefix = prefix.strip("/")

    def s3(part: str, app_urls: bool) -> dict[str, object]:
        return {
            "BACKEND": "annotation.storage.ObjectStorage",
            "OPTIONS": {
                "bucket_name": bucket,
                "location": f"{prefix}/{part}" if prefix else part,
                "endpoint_url": endpoint_url or None,
                "region_name": region,
                "access_key": access_key or None,
                "secret_key": secret_key or None,
                "signature_version": "s3v4",
                "addressing_style": "path",
                "querystring_expire": url_expire_s,
                "file_overwrite": True,  # names are generated and unique; no probe per write
                "default_acl": None,
                # Media URLs on pages go to the /media/ view, which checks the role first.
                "app_url_base": media_url if app_urls else "",
            },
        }

    return {
        "default": s3("media", app_urls=True),
        "exports": s3("exports", app_urls=False),
        "runs": s3("runs", app_urls=False),
        "staticfiles": static,
    }


# ---- end of object storage -----------------------------------------------------------------

# Uploads: bodies above this size are refused before they are read whole.
MAX_UPLOAD_MB = env_int("MERSV_MAX_UPLOAD_MB", 500)
# Every other route (forms, JSON): far less, so a client cannot make the server read gigabytes.
MAX_REQUEST_MB = env_int("MERSV_MAX_REQUEST_MB", 10)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 5
# Decoding an uploaded video runs in a child process with these limits
# (annotation/ingest/isolation.py): a file that makes the decoder crash, hang or swell fails
# its video, never the worker.
DECODE_MEM_MB = env_int("MERSV_DECODE_MEM_MB", 2048)
DECODE_CPU_S = env_int("MERSV_DECODE_CPU_S", 120)
DECODE_WALL_S = env_int("MERSV_DECODE_WALL_S", 180)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o640

# Ingestion defaults (see annotation/ingest/pipeline.py).
INGEST_N_FRAMES = env_int("MERSV_INGEST_FRAMES", 16)
# A target lost at frame k >= this keeps a clip of its k frames (the fewest a model can use:
# the video backbones sample 8); dataset builds leave clips shorter than INGEST_N_FRAMES out.
INGEST_MIN_FRAMES = env_int("MERSV_INGEST_MIN_FRAMES", 8)
INGEST_CROP_SIZE = env_int("MERSV_CROP_SIZE", 150)
DEFAULT_PIXEL_SIZE_UM = env_float("MERSV_PIXEL_SIZE_UM", 0.5)
# The expected sperm head in µm: the tracker's sizes follow it and the pixel size
# (annotation/ingest/scale.py; human heads by default, about 8.5 x 4.5 for bull).
INGEST_HEAD_LENGTH_UM = env_float("MERSV_HEAD_LENGTH_UM", 4.6)
INGEST_HEAD_WIDTH_UM = env_float("MERSV_HEAD_WIDTH_UM", 3.0)

# Grading. The panel's votes stay hidden after a vote unless the lab turns this on: a grade
# changed after seeing the panel is kept apart and never counted (`annotation.grading.answers`),
# so the default gives independent votes without configuring anything.
SHOW_PANEL_AFTER_VOTE = env_bool("MERSV_SHOW_PANEL_AFTER_VOTE", False)
# A clip's vote target: the queue stops offering it once its votes plus the clips held for other
# experts reach this (the paper's panel had 40 experts).
MAX_VOTES = env_int("MERSV_MAX_VOTES", 40)
# How long a clip stays held for the expert it was offered to before others may get it.
ASSIGNMENT_MINUTES = env_int("MERSV_ASSIGNMENT_MINUTES", 10)
# A grading session ends after this long without an answer (the session summary page).
GRADING_SESSION_IDLE_HOURS = env_float("MERSV_GRADING_SESSION_IDLE_HOURS", 2.0)

# Adaptive retirement (annotation/aggregation/retirement.py, retirement_service.py): a clip
# leaves the queue once it has MERSV_MIN_VOTES votes and its expected EMD to the posterior mean
# is at most the tolerance, or once it has MAX_VOTES votes. Defaults from benchmarks/retirement.py.
RETIRE_TOLERANCE = env_float("MERSV_RETIRE_TOLERANCE", 0.0175)
RETIRE_MIN_VOTES = env_int("MERSV_MIN_VOTES", 10)
# The mode guard: a clip whose posterior allows another grade mode with more than this
# probability keeps collecting (1.0 = off). Rater-aware votes: each vote severity-corrected and
# weighted by its expert's fitted noise (the rater model's latest snapshot). The production
# run's m is fitted on clips with at least MERSV_RETIRE_FULL_PANEL_VOTES votes.
RETIRE_MODE_GUARD = env_float("MERSV_RETIRE_MODE_GUARD", 1.0)
# The share of the production run's fitted m (pseudo-votes of its prediction) the rule counts.
RETIRE_PRIOR_DISCOUNT = env_float("MERSV_RETIRE_PRIOR_DISCOUNT", 0.25)
RETIRE_RATER_AWARE = env_bool("MERSV_RETIRE_RATER_AWARE", True)
RETIRE_FULL_PANEL_VOTES = env_int("MERSV_RETIRE_FULL_PANEL_VOTES", 30)
# Hidden repeats (annotation/grading/repeats.py): the share of queue requests that re-offer a
# clip the expert graded at least MERSV_REPEAT_MIN_AGE_H hours ago, for intra-rater consistency.
REPEAT_RATE = env_float("MERSV_REPEAT_RATE", 0.05)
REPEAT_MIN_AGE_H = env_float("MERSV_REPEAT_MIN_AGE_H", 24.0)
# A grade counts as very fast (flagged on the dashboard) below this many ms, or below this
# share of the expert's own median time per grade.
FAST_GRADE_MS = env_int("MERSV_FAST_GRADE_MS", 2000)
FAST_GRADE_FRACTION = env_float("MERSV_FAST_GRADE_FRACTION", 0.25)

# Trainee practice (datasets/practice.py). A trainee qualifies once they graded at least
# MERSV_TRAINEE_MIN_CLIPS practice clips with a weighted kappa against the panel of at least
# MERSV_TRAINEE_PASS_KAPPA; unset, the bar is the median expert's leave-one-out kappa.
TRAINEE_PASS_KAPPA: float | None = (
    env_float("MERSV_TRAINEE_PASS_KAPPA", 0.0)
    if os.environ.get("MERSV_TRAINEE_PASS_KAPPA")
    else None
)
TRAINEE_MIN_CLIPS = env_int("MERSV_TRAINEE_MIN_CLIPS", 30)
# The training run whose out-of-fold predictions trainees see; 0 = the newest succeeded run on
# the practice set's dataset version.
TRAINEE_RUN_ID = env_int("MERSV_TRAINEE_RUN_ID", 0)

# Sessions and cookies.
SESSION_COOKIE_AGE = env_int("MERSV_SESSION_MAX_AGE_S", 12 * 3600)
# A session also ends after this long without a request (frontend.middleware).
SESSION_IDLE_S = env_int("MERSV_SESSION_IDLE_S", 30 * 60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("MERSV_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("MERSV_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's session authentication; a bad token answers 401, not 403.
        "annotation.access.tokens.SessionAuthenticationTokenChallenge",
        "annotation.access.tokens.ApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "PAGE_SIZE": 100,
    # DRF's handler, plus an audit event for every 403.
    "EXCEPTION_HANDLER": "annotation.api_errors.api_exception_handler",
}
# --- request input bounds (frontend/input_bounds.py) -----------------------------------------
# Every list API pages with ?limit= (1..API_MAX_PAGE_SIZE, default PAGE_SIZE) and ?offset=; a
# value out of bounds is a 400 that says them. JSON bodies nest at most MAX_JSON_DEPTH levels
# and carry no NUL, no whole number beyond 64 bits and no infinite number (400 with the reason).
API_MAX_PAGE_SIZE = env_int("MERSV_API_MAX_PAGE_SIZE", 1000)
MAX_JSON_DEPTH = 32
REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "frontend.input_bounds.BoundedLimitOffsetPagination"
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "frontend.input_bounds.BoundedJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]
# --- end of request input bounds -------------------------------------------------------------
SPECTACULAR_SETTINGS = {
    "TITLE": "MERSV platform API",
    "DESCRIPTION": "Multi-expert sperm video grading: videos, clips, ratings, distributions.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # One schema name per choice set (several serializers share them).
    "ENUM_NAME_OVERRIDES": {
        "BackboneEnum": "modeling.ml.backbones.BACKBONES",
        "LossEnum": "modeling.ml.losses.LOSS_NAMES",
        "VideoStatusEnum": "annotation.models.Video.Status",
        "DatasetVersionStatusEnum": "datasets.models.DatasetVersion.Status",
        "JobStatusEnum": "modeling.models.JobStatus",
    },
}

# Training runs (modeling/): checkpoints, fold models and features under
# MERSV_RUNS_ROOT/<run id>-<random>/; experiment-grid reports under
# MERSV_RUNS_ROOT/grids/<grid id>/ (with object storage both in the bucket's runs/ folder).
TRAINING_RUNS_ROOT = Path(env_str("MERSV_RUNS_ROOT", str(VAR_DIR / "runs")))
STORAGES = storages_setting(
    STORAGE_URL,
    endpoint_url=S3_ENDPOINT_URL,
    region=S3_REGION,
    access_key=S3_ACCESS_KEY_ID,
    secret_key=S3_SECRET_ACCESS_KEY,
    url_expire_s=S3_URL_EXPIRE_S,
    media_url=MEDIA_URL,
)
# Pretrained backbone weights (the training option `pretrained` names an entry of this folder;
# curators give a name, never a path). The web process and the training workers read it; with
# object storage the weights are files under runs/weights/ of the bucket instead.
WEIGHTS_DIR = Path(env_str("MERSV_WEIGHTS_DIR", str(VAR_DIR / "weights")))
# One training task (a run, or one run of a grid) may take this long before it is stopped and
# marked failed; its checkpoints stay, so it can be resumed. The broker's visibility timeout
# below is derived from it, so a long task is never redelivered while it still runs.
TRAINING_TIME_LIMIT_S = env_int("MERSV_TRAINING_TIME_LIMIT_S", 4 * 3600)
# A running run whose worker has not written a heartbeat for this long is taken over by a
# redelivered task (the worker died); a fresher one makes the redelivery wait and retry.
TRAINING_HEARTBEAT_STALE_S = env_int("MERSV_TRAINING_HEARTBEAT_STALE_S", 300)
# CPU threads torch may use for training and prediction (0: torch's default, all cores).
TRAINING_TORCH_THREADS = env_int("MERSV_TORCH_THREADS", 0)

# Celery. The embedded default is kombu's filesystem transport: no server, and a real worker
# process (`celery -A config worker`) consumes the queue from the same folders.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    # kombu keeps its exchange tables in ./control unless told: under var/, not the checkout.
    _control_dir = VAR_DIR / "celery" / "control"
    for _folder in (_queue_dir, _processed_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "control_folder": str(_control_dir),
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
    }
else:
    # A task is redelivered only after the visibility timeout: keep it above the longest
    # task's hard time limit, or a long training epoch would run twice.
    # The longest hard limit is a training task's (soft + 300 s) or the default one (3900 s,
    # which bounds every other task): a short training limit must not shorten this below it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": max(TRAINING_TIME_LIMIT_S + 300, 3900) + 600
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The two queues' names: every task goes to the default one, training tasks to the training
# one (served by the training workers). Renaming both lets two deployments share one broker.
CELERY_TASK_DEFAULT_QUEUE = env_str("MERSV_QUEUE_DEFAULT", "celery")
CELERY_TASK_ROUTES = {"modeling.tasks.*": {"queue": env_str("MERSV_QUEUE_TRAINING", "training")}}
CELERY_TASK_SOFT_TIME_LIMIT = 3600
CELERY_TASK_TIME_LIMIT = 3900
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic tasks, sent by one `celery -A config beat` process (docker/compose*.yml); the
# schedule's state file lives in the var folder.
CELERY_BEAT_SCHEDULE = {
    "prune-direct-uploads": {
        "task": "annotation.tasks.prune_direct_uploads",
        "schedule": float(env_int("MERSV_UPLOAD_PRUNE_INTERVAL_S", 3600)),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"skip_logged_denials": {"()": "annotation.access.access_log.SkipLoggedDenials"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # A refused request is logged once, in one line, by annotation.access.access_log; Django's own
    # record of it (with the PermissionDenied traceback) is dropped.
    "loggers": {"django.request": {"filters": ["skip_logged_denials"]}},
    "root": {"handlers": ["console"], "level": env_str("MERSV_LOG_LEVEL", "INFO")},
}
