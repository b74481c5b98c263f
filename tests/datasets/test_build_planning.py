"""Dataset builds a curator can plan: the live count of what the filters select, the filters
that leave out raters, very fast grades and rater-model outliers, a failed build's name free
again, and the datasheet recorded and rendered."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.access.accounts import user_create
from annotation.aggregation.distributions import emd
from annotation.aggregation.rater_model_service import rater_model_refit
from annotation.aggregation.selectors import snapshot_corrected_by_clip
from annotation.grades import GRADES
from annotation.models import AuditEvent, Clip, Rating
from datasets import services
from datasets.models import DatasetRating, DatasetVersion
from datasets.services import export_dir_for
from frontend.markdown_html import markdown_html
from tests.conftest import PASSWORD


@pytest.fixture
def rated(db, synthetic_small: Path) -> Path:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    return synthetic_small


@pytest.fixture
def export_root(settings, tmp_path: Path) -> Path:
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


def _raters() -> list[str]:
    return sorted(set(Rating.objects.values_list("rater__username", flat=True)))


def _rater_model_emds() -> dict[str, float]:
    """Each clip's EMD between its raw and its severity-corrected distribution."""
    corrected = snapshot_corrected_by_clip(rater_model_refit())
    out = {}
    for clip in Clip.objects.all():
        raw = np.array(clip.vote_counts, dtype=float) / clip.votes_total
        out[clip.external_id] = float(emd(raw, np.array([corrected[clip.pk][g] for g in GRADES])))
    return out


def _plan(settings, **filters: object) -> tuple[dict, DatasetVersion]:
    preview = services.selection_preview(n_folds=2, **filters)
    version = services.dataset_version_create(
        name="planned", created_by=None, n_folds=2, enqueue=False, **filters
    )
    services.version_claim(version_id=version.pk)
    return preview, services.dataset_version_build(version_id=version.pk)


def test_the_preview_counts_exactly_what_the_build_then_freezes(
    rated, export_root, settings
) -> None:
    left_out = _raters()[:2]
    # Three of one expert's grades were very fast (the dashboard's flag), the rest took 8 s.
    emds = _rater_model_emds()
    threshold = sorted(emds.values())[-2]  # leaves out exactly the one clip furthest away
    kept_clips = [c for c, e in emds.items() if e <= threshold]
    Rating.objects.update(time_spent_ms=8000)
    fast = Rating.objects.filter(
        rater__username=_raters()[2], clip__external_id__in=kept_clips
    ).order_by("pk")[:3]
    Rating.objects.filter(pk__in=[r.pk for r in fast]).update(time_spent_ms=300)
    filters = {
        "exclude_raters": left_out,
        "exclude_fast_grades": True,
        "max_rater_model_emd": threshold,
    }
    preview, version = _plan(settings, **filters)
    assert version.status == "ready", version.error
    assert preview["left_out"]["clips_rater_model"] == 1
    assert preview["left_out"]["votes_fast"] == 3
    expected_votes = Rating.objects.filter(clip__external_id__in=kept_clips).exclude(
        rater__username__in=left_out
    )
    assert (
        preview["left_out"]["votes_excluded_raters"]
        == (
            Rating.objects.filter(clip__external_id__in=kept_clips, rater__username__in=left_out)
        ).count()
    )
    assert preview["clips"] == version.n_clips == len(kept_clips) == 5
    assert preview["votes"] == version.n_ratings == expected_votes.count() - 3
    assert DatasetRating.objects.filter(version=version).count() == version.n_ratings
    assert preview["patients"] == version.n_patients
    assert preview["raters"] == version.summary["counts"]["raters"] == len(_raters()) - 2
    assert preview["modes"] == {g: version.clips.filter(mode=g).count() for g in GRADES}
    assert sum(row["total"] for row in preview["folds"]) == version.n_clips
    # Every filter is recorded in the datasheet; the left-out raters as a count only (the
    # export's rater ids are per-version pseudonyms, the platform ids would undo them).
    readme = (export_dir_for(version) / "README.md").read_text()
    assert "- exclude fast grades: yes" in readme
    assert f"- max rater model emd: {threshold:.4g}" in readme
    assert "- exclude raters: 2 experts' votes left out" in readme
    assert not any(rater in readme for rater in left_out)


def test_the_preview_api_answers_curators_and_refuses_an_unknown_rater_by_name(
    rated, make_user
) -> None:
    client = APIClient()
    client.force_authenticate(make_user("curator"))
    answer = client.get("/api/dataset-preview/", {"min_votes": 1, "n_folds": 2})
    assert answer.status_code == 200
    assert answer.json()["clips"] == 6 and answer.json()["votes"] == Rating.objects.count()
    nothing = client.get("/api/dataset-preview/", {"min_votes": 10_000})
    assert nothing.json()["clips"] == 0 and "no clip matches" in nothing.json()["problem"]
    unknown = client.get("/api/dataset-preview/", {"exclude_raters": ["nobody-42"]})
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "no expert has the id nobody-42; check the list"
    bad = client.get("/api/dataset-preview/", {"max_rater_model_emd": -1})
    assert bad.status_code == 400 and "max_rater_model_emd" in bad.json()
    assert DatasetVersion.objects.count() == 0  # a preview writes nothing


def test_a_failed_build_releases_its_name_and_the_retry_is_audited(rated, export_root) -> None:
    with pytest.raises(CommandError, match="no clip matches"):
        call_command("build_dataset", "retry-me", "--no-progress", "--min-votes=10000")
    failed = DatasetVersion.objects.get(name="retry-me")
    assert failed.status == "failed"
    call_command("build_dataset", "retry-me", "--no-progress", "--min-votes=1")
    version = DatasetVersion.objects.get(name="retry-me")
    assert version.status == "ready" and version.pk != failed.pk
    event = AuditEvent.objects.filter(action="dataset_build", object_id=str(version.pk)).get()
    assert event.detail["replaces_failed_version"] == failed.pk
    # A built (or building) version keeps its name.
    with pytest.raises(services.DatasetError, match="exists; versions are immutable"):
        services.dataset_version_create(name="retry-me", created_by=None, enqueue=False)
    services.dataset_version_create(name="pending-one", created_by=None, enqueue=False)
    with pytest.raises(services.DatasetError, match="exists"):
        services.dataset_version_create(name="pending-one", created_by=None, enqueue=False)


def test_the_datasheet_has_one_agreement_row_per_measure_and_no_leftover_line(
    rated, export_root
) -> None:
    call_command("build_dataset", "sheet", "--no-progress")
    readme = (export_dir_for(DatasetVersion.objects.get(name="sheet")) / "README.md").read_text()
    section = readme.split("## Agreement between experts")[1].split("##")[0].strip().splitlines()
    assert section[0] == "| measure | estimate | confidence interval | details |"
    rows = section[2:]
    assert len(rows) == 2, rows
    assert re.fullmatch(r"\| fleiss kappa \| -?[\d.]+ \|  \|  \|", rows[0]), rows[0]
    assert re.fullmatch(
        r"\| krippendorff alpha ordinal \| -?[\d.]+ \| 95% CI -?[\d.]+ \.\. -?[\d.]+ \| "
        r"n_clips_pairable=6, n_resamples=1000 \|",
        rows[1],
    ), rows[1]
    assert "shown on the version page and in the API" not in readme


def test_the_version_page_renders_the_datasheet_as_escaped_html(
    rated, export_root, make_user
) -> None:
    version = services.dataset_version_create(
        name="html-sheet", created_by=None, enqueue=False, licence="<script>alert(1)</script>"
    )
    services.version_claim(version_id=version.pk)
    services.dataset_version_build(version_id=version.pk)
    client = Client()
    client.login(username=make_user("curator").username, password=PASSWORD)
    page = client.get("/datasets/html-sheet/").content.decode()
    sheet = page.split('id="datasheet">')[1].split("</section>")[0]
    assert "<h2>Agreement between experts</h2>" in sheet
    assert '<th scope="row">krippendorff alpha ordinal</th>' in sheet
    assert "<script>" not in sheet and "&lt;script&gt;alert(1)&lt;/script&gt;" in sheet
    assert "<code>MANIFEST.sha256</code>" in sheet


def test_the_markdown_subset_renders_lists_tables_code_and_escapes_everything() -> None:
    html = str(
        markdown_html(
            "# Name <b>\n\nA _note_ with `a|b` and snake_case.\n\n- one\n  - nested\n- two\n\n"
            "| k | v |\n|---|---|\n| a \\| b | <i>x</i> |\n| short |\n\n```\n<tag> & \n```\n"
        )
    )
    assert "<h1>Name &lt;b&gt;</h1>" in html
    assert "<p>A <em>note</em> with <code>a|b</code> and snake_case.</p>" in html
    assert "<ul>\n<li>one\n<ul>\n<li>nested\n</li></ul>\n</li>\n<li>two\n</li></ul>" in html
    assert '<th scope="row">a | b</th>\n<td>&lt;i&gt;x&lt;/i&gt;</td>' in html
    assert '<th scope="row">short</th>\n<td></td>' in html  # a short row keeps its columns
    assert "<pre><code>&lt;tag&gt; &amp; </code></pre>" in html


def test_a_curator_builds_with_the_new_filters_from_the_form(rated, export_root) -> None:
    user_create(username="cur", role="curator", password=PASSWORD)
    client = Client()
    client.login(username="cur", password=PASSWORD)
    left_out = _raters()[0]
    answer = client.post(
        "/datasets/",
        {
            "name": "form-v1", "licence": "x", "min_votes": 1, "n_folds": 2, "seed": 0,
            "exclude_raters": f"{left_out}, ", "exclude_fast_grades": "on",
            "max_rater_model_emd": "0.5",
        },
    )  # fmt: skip
    assert answer.status_code == 302
    version = DatasetVersion.objects.get(name="form-v1")
    assert version.filters["exclude_raters"] == [left_out]
    assert version.filters["exclude_fast_grades"] is True
    assert version.filters["max_rater_model_emd"] == 0.5
    form = {"name": "form-v2", "licence": "x", "min_votes": 1, "n_folds": 2, "seed": 0}
    refused = client.post("/datasets/", {**form, "exclude_raters": "ghost"})
    assert "no expert has the id ghost" in refused.content.decode()


def test_a_version_built_before_the_fixed_datasheet_re_exports_its_own_bytes(
    rated, export_root
) -> None:
    # Versions built before datasheet format 2 carry no "datasheet_format" in their summary:
    # their re-export must repeat their datasheet (alpha's fields as rows, the note), or its
    # content hash would no longer match the frozen one.
    call_command("build_dataset", "old", "--no-progress")
    version = DatasetVersion.objects.get(name="old")
    folds = services.frozen_tables(version)["folds"]
    legacy = {k: v for k, v in version.summary.items() if k != "datasheet_format"}
    old_sheet = services._datasheet(version, legacy, folds)
    assert "| ci high |" in old_sheet and "shown on the version page and in the API" in old_sheet
    new_sheet = services._datasheet(version, version.summary, folds)
    assert new_sheet == (export_dir_for(version) / "README.md").read_text()
