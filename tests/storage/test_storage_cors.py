"""`manage.py storage_cors` against a real S3 API (moto's server): the rule for browser direct
uploads is written, read back, and --check / `check --deploy` name an origin it lacks."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core import checks
from django.core.management import CommandError, call_command

from annotation.storage_cors import CHECK_ID, RULE_ID, storage_cors_check
from tests.storage.conftest import BUCKET

SITE = "https://grading.example.org"
OTHER_RULE = {"ID": "lab-viewer", "AllowedOrigins": ["https://viewer.example.org"],
              "AllowedMethods": ["GET"], "AllowedHeaders": [], "ExposeHeaders": []}  # fmt: skip


@pytest.fixture
def bucket(object_storage):
    client = object_storage.client()
    client.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [OTHER_RULE]})
    yield client
    client.delete_bucket_cors(Bucket=BUCKET)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("storage_cors", *args, stdout=out)
    return out.getvalue()


def _rules(client) -> list[dict]:
    return client.get_bucket_cors(Bucket=BUCKET)["CORSRules"]


def test_the_command_writes_the_upload_rule_for_the_site_origin_and_keeps_other_rules(
    bucket, settings
) -> None:
    settings.STORAGE_CORS_ORIGINS = [SITE]
    with pytest.raises(CommandError, match=f"no CORS rule allows the origin {SITE}"):
        _run("--check")
    assert "now allow PUT with the ETag exposed from " + SITE in _run()
    rules = {rule.get("ID"): rule for rule in _rules(bucket)}
    assert set(rules) == {RULE_ID, "lab-viewer"}
    ours = rules[RULE_ID]
    assert ours["AllowedOrigins"] == [SITE] and ours["AllowedMethods"] == ["PUT"]
    assert ours["ExposeHeaders"] == ["ETag"]
    assert "allow PUT" in _run("--check")
    assert storage_cors_check() == []
    # Run again for two origins: our rule is replaced, not added twice.
    _run("--origin", SITE, "--origin", "http://127.0.0.1:8000")
    ours = [rule for rule in _rules(bucket) if rule.get("ID") == RULE_ID]
    assert len(ours) == 1 and ours[0]["AllowedOrigins"] == [SITE, "http://127.0.0.1:8000"]


def test_check_names_the_origin_the_rules_do_not_serve(bucket, settings) -> None:
    settings.STORAGE_CORS_ORIGINS = [SITE]
    _run()
    moved = "https://new-host.example.org"
    with pytest.raises(CommandError) as refused:
        _run("--check", "--origin", SITE, "--origin", moved)
    assert f"no CORS rule allows the origin {moved}" in str(refused.value)
    assert SITE not in str(refused.value).split("not enough:")[1].split(";")[0]
    settings.STORAGE_CORS_ORIGINS = [moved]
    [warning] = storage_cors_check()
    assert warning.id == CHECK_ID and warning.level == checks.WARNING
    assert moved in warning.msg and "storage_cors" in warning.hint
    # A rule for the origin without the ETag header is not enough either.
    bucket.put_bucket_cors(
        Bucket=BUCKET,
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": [moved], "AllowedMethods": ["PUT"]}]},
    )
    with pytest.raises(CommandError, match=f"origin {moved} do not expose the ETag header"):
        _run("--check")


def test_bad_origins_and_missing_object_storage_are_refused_with_the_fix(bucket, settings) -> None:
    with pytest.raises(CommandError, match=re.escape("'https://site.org/upload' is not an origin")):
        _run("--origin", "https://site.org/upload")
    settings.STORAGE_CORS_ORIGINS = []
    with pytest.raises(CommandError, match="no origin to allow: name the site's origin"):
        _run()
    assert [rule["ID"] for rule in _rules(bucket)] == ["lab-viewer"]  # nothing written


def test_with_local_storage_the_command_says_no_rule_is_needed(settings) -> None:
    for args in (("--origin", SITE), ("--check",), ()):
        with pytest.raises(CommandError, match="no object storage is configured"):
            _run(*args)
    assert storage_cors_check() == []
