"""The bucket's CORS rule for browser direct uploads (``manage.py storage_cors``).

With object storage the upload page PUTs the parts of a file straight to the bucket
(frontend/static/frontend/direct_upload.js) from the site's origin, so the bucket must
answer the preflight for PUT from that origin and expose the ``ETag`` header of each part
(the page sends the ETags back to complete the upload). The origins are
MERSV_STORAGE_CORS_ORIGINS, by default the site's DJANGO_CSRF_TRUSTED_ORIGINS.

``cors_rules_set`` writes one rule of ours (ID ``mersv-direct-upload``) and keeps any other
rule of the bucket; ``cors_problems`` says, origin by origin, what the bucket's rules lack.
MinIO has no per-bucket CORS API (it answers NotImplemented): there the server-wide
MINIO_API_CORS_ALLOW_ORIGIN setting does the same (docker/compose.yml sets it).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from annotation.storage import MEDIA, object_storage

RULE_ID = "mersv-direct-upload"
MAX_AGE_S = 3600


class CorsError(Exception):
    """The rules cannot be read or written (no object storage, a refused call, bad input)."""


class CorsNotSupported(CorsError):
    """The S3 API has no per-bucket CORS (MinIO): its server-wide setting applies instead."""


def cors_origins(origins: Sequence[str] | None = None) -> list[str]:
    """The origins to allow: ``origins`` when given, else MERSV_STORAGE_CORS_ORIGINS (by
    default the CSRF trusted origins); each checked to be ``scheme://host[:port]``."""
    chosen = list(origins) if origins else list(settings.STORAGE_CORS_ORIGINS)
    if not chosen:
        raise CorsError(
            "no origin to allow: name the site's origin with --origin https://grading.example.org "
            "or set MERSV_STORAGE_CORS_ORIGINS (default: DJANGO_CSRF_TRUSTED_ORIGINS)"
        )
    for origin in chosen:
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise CorsError(
                f"{origin!r} is not an origin: write scheme://host[:port] with no path, e.g. "
                "https://grading.example.org"
            )
    return [origin.rstrip("/") for origin in chosen]


def cors_rule(origins: Sequence[str]) -> dict[str, Any]:
    return {
        "ID": RULE_ID,
        "AllowedOrigins": list(origins),
        "AllowedMethods": ["PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": MAX_AGE_S,
    }


def _client_and_bucket() -> tuple[Any, str]:
    try:
        storage = object_storage(MEDIA)
    except RuntimeError as exc:
        raise CorsError(
            "no object storage is configured (MERSV_STORAGE_URL): uploads go through the web "
            "server and need no CORS rule"
        ) from exc
    return storage.client(), storage.bucket_name


def _refused(exc: Exception, action: str, bucket: str) -> CorsError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in ("NotImplemented", "NotImplementedError"):
        return CorsNotSupported(
            f"the S3 API of bucket {bucket!r} has no per-bucket CORS ({action}: {code}); on "
            "MinIO set MINIO_API_CORS_ALLOW_ORIGIN to the site's origin instead (README)"
        )
    return CorsError(f"{action} on bucket {bucket!r} failed: {exc}")


def cors_rules_get() -> list[dict[str, Any]]:
    """The bucket's CORS rules ([] when it has none)."""
    client, bucket = _client_and_bucket()
    try:
        answer = client.get_bucket_cors(Bucket=bucket)
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
            return []
        raise _refused(exc, "GetBucketCors", bucket) from exc
    except Exception as exc:  # the endpoint unreachable, the credentials refused
        raise CorsError(f"GetBucketCors on bucket {bucket!r} failed: {exc}") from exc
    return list(answer.get("CORSRules", []))


def cors_rules_set(origins: Sequence[str]) -> list[dict[str, Any]]:
    """Write our rule for ``origins`` (replacing an earlier one of ours, keeping the bucket's
    other rules); returns the rules the bucket holds afterwards, as read back."""
    client, bucket = _client_and_bucket()
    others = [rule for rule in cors_rules_get() if rule.get("ID") != RULE_ID]
    try:
        client.put_bucket_cors(
            Bucket=bucket, CORSConfiguration={"CORSRules": [*others, cors_rule(origins)]}
        )
    except client.exceptions.ClientError as exc:
        raise _refused(exc, "PutBucketCors", bucket) from exc
    return cors_rules_get()


def _origin_allowed(rule: dict[str, Any], origin: str) -> bool:
    # S3 allows one "*" wildcard in an allowed origin (e.g. https://*.example.org).
    return any(fnmatch.fnmatchcase(origin, allowed) for allowed in rule.get("AllowedOrigins", []))


def cors_problems(rules: Sequence[dict[str, Any]], origins: Sequence[str]) -> list[str]:
    """What the bucket's ``rules`` lack for browsers on ``origins`` to upload parts: one line
    per origin; [] when every origin may PUT and read the ETag header."""
    problems = []
    for origin in origins:
        matching = [rule for rule in rules if _origin_allowed(rule, origin)]
        put = [rule for rule in matching if "PUT" in rule.get("AllowedMethods", [])]
        etag = [
            rule
            for rule in put
            if "etag" in (header.lower() for header in rule.get("ExposeHeaders", []))
        ]
        if not matching:
            problems.append(f"no CORS rule allows the origin {origin}")
        elif not put:
            problems.append(f"the CORS rules of the origin {origin} do not allow PUT")
        elif not etag:
            problems.append(f"the CORS rules of the origin {origin} do not expose the ETag header")
    return problems


CHECK_ID = "mersv.W110"


def storage_cors_check(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """`check --deploy`: with object storage, the bucket's CORS rules let the site's origins
    upload parts (one GetBucketCors call). Nothing to say with local storage, or where the
    API has no per-bucket CORS (MinIO: MINIO_API_CORS_ALLOW_ORIGIN applies)."""
    from django.core import checks

    from annotation.storage import is_local

    if is_local(MEDIA):
        return []
    hint = "Run `python manage.py storage_cors` (README: object storage)."
    try:
        origins = cors_origins()
        problems = cors_problems(cors_rules_get(), origins)
    except CorsNotSupported:
        return []
    except CorsError as exc:
        return [
            checks.Warning(
                f"The bucket's CORS rules cannot be checked: {exc}.", hint=hint, id=CHECK_ID
            )
        ]
    if not problems:
        return []
    return [
        checks.Warning(
            "Browsers cannot upload straight to the bucket: " + "; ".join(problems) + ".",
            hint=hint,
            id=CHECK_ID,
        )
    ]
