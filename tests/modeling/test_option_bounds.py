"""Training options within their bounds on every path; `pretrained` by name from the weights
folder, never a path a curator could probe; no absolute run folder shown to curators
(issue 16, items 8 and 9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from datasets.models import DatasetVersion
from datasets.services import export_dir_for
from modeling import services
from modeling.ml.options import option_value_problem
from modeling.ml.train import TRAIN_OPTIONS
from modeling.models import ExperimentGrid, TrainingRun

OPTIONS = {option.name: option for option in TRAIN_OPTIONS}


@pytest.fixture
def ready_version(db, settings, tmp_path: Path) -> DatasetVersion:
    """A built version as far as starting a run checks (its export's splits.csv)."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.TRAINING_RUNS_ROOT = tmp_path / "runs"
    version = DatasetVersion.objects.create(
        name="bounds", status=DatasetVersion.Status.READY, frozen=True, n_folds=3,
        pseudonym_salt="s", content_hash="0" * 64,
    )  # fmt: skip
    folder = export_dir_for(version)
    folder.mkdir(parents=True)
    (folder / "splits.csv").write_text("clip_id,fold\n")
    return version


@pytest.fixture
def weights_dir(settings, tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "resnet18-k400.pt").write_bytes(b"weights")
    settings.WEIGHTS_DIR = folder
    return folder


@pytest.fixture
def curator_client(make_user) -> Client:
    client = Client()
    client.force_login(make_user("curator", "bounds-curator"))
    return client


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batch_size": 10**6}, "batch_size must be a whole number from 1 to 4096, not 1000000"),
        ({"seed": 2**40}, "seed must be a whole number from 0 to 2147483647, not 1099511627776"),
        ({"seed": -3}, "seed must be a whole number from 0 to 2147483647, not -3"),
        ({"epochs": 10**9}, "epochs must be a whole number from 1 to 10000, not 1000000000"),
        ({"head_hidden": 10**5}, "head_hidden must be a whole number from 0 to 4096"),
        ({"lr": float("nan")}, "lr must be a finite number from 1e-08 to 10"),
        ({"lr": 1e9}, "lr must be a finite number from 1e-08 to 10, not 1000000000.0"),
        ({"momentum": 2.0}, "momentum must be a finite number from 0 to 1, not 2.0"),
        ({"batch_size": 2.5}, "batch_size must be a whole number from 1 to 4096, not 2.5"),
        ({"seed": True}, "seed must be a whole number from 0 to 2147483647, not True"),
    ],
)
def test_the_service_refuses_options_beyond_their_bounds_naming_them(
    ready_version, config, message
) -> None:
    with pytest.raises(services.TrainingError) as refused:
        services.training_run_start(
            version=ready_version, config=config, created_by=None, enqueue=False
        )

    assert message in str(refused.value)
    assert not TrainingRun.objects.exists()


def test_a_grid_cannot_carry_an_unbounded_option_in_its_base_config(ready_version) -> None:
    with pytest.raises(services.TrainingError, match="batch_size must be a whole number"):
        services.experiment_grid_start(
            version=ready_version, backbones=["resnet"], losses=["emd"], epochs=1,
            base_config={"batch_size": 10**7}, created_by=None, enqueue=False,
        )  # fmt: skip

    assert not ExperimentGrid.objects.exists() and not TrainingRun.objects.exists()


def test_every_numeric_option_has_both_bounds_and_its_default_lies_within() -> None:
    numeric = [o for o in TRAIN_OPTIONS if o.kind in (int, float) and not o.spec.choices]

    assert {o.name for o in numeric} >= {"seed", "batch_size", "epochs", "lr"}
    for option in numeric:
        assert option.spec.min is not None and option.spec.max is not None, option.name
        assert option_value_problem(option, option.surface_default) is None, option.name


# --- pretrained: a name in the weights folder ------------------------------------------------


@pytest.mark.parametrize(
    "probe", ["/etc/passwd", "/no/such/file.pt", "../../etc/passwd", "weights/../x.pt", "~/.ssh"]
)
def test_a_curator_cannot_probe_worker_paths_through_pretrained(
    ready_version, weights_dir, curator_client, probe
) -> None:
    response = curator_client.post(
        "/api/training-runs/",
        {"dataset": "bounds", "pretrained": probe},
        content_type="application/json",
    )

    assert response.status_code == 400
    detail = response.json()["detail"]
    # One answer whatever the path: it names the rule, never whether the path exists.
    assert detail.replace(repr(probe[:40]), "NAME") == (
        "pretrained must be the name of weights in the weights folder (letters, digits, '.', "
        "'_', '-'; up to 128 characters, no folders), not NAME"
    )
    assert not TrainingRun.objects.exists()


def test_an_unknown_weights_name_lists_the_weights_there_and_nothing_else(
    ready_version, weights_dir, curator_client
) -> None:
    response = curator_client.post(
        "/api/training-runs/",
        {"dataset": "bounds", "pretrained": "passwd"},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json()["detail"] == (
        "no pretrained weights named 'passwd' in the weights folder; "
        "the weights there: resnet18-k400.pt"
    )
    assert str(weights_dir) not in response.json()["detail"]


def test_a_weights_name_is_stored_and_resolved_in_the_weights_folder_at_training(
    ready_version, weights_dir, curator_client
) -> None:
    response = curator_client.post(
        "/api/training-runs/",
        {"dataset": "bounds", "pretrained": "resnet18-k400.pt"},
        content_type="application/json",
    )

    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get()
    assert run.config["pretrained"] == "resnet18-k400.pt"
    assert services.pretrained_path("resnet18-k400.pt") == weights_dir / "resnet18-k400.pt"


def test_the_train_command_still_takes_a_local_path_from_an_admin(
    ready_version, tmp_path: Path
) -> None:
    weights = tmp_path / "elsewhere" / "mine.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")

    config = services.training_config_check({"pretrained": str(weights)}, local_paths=True)
    missing = tmp_path / "missing.pt"
    with pytest.raises(services.TrainingError, match="pretrained weights not found"):
        services.training_config_check({"pretrained": str(missing)}, local_paths=True)

    assert config.pretrained == str(weights.resolve())


def test_the_train_command_refuses_a_missing_path_before_creating_a_run(
    ready_version, tmp_path: Path
) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="pretrained weights not found"):
        call_command(
            "train", "--dataset", "bounds", "--pretrained", str(tmp_path / "none.pt"),
            "--no-progress",
        )  # fmt: skip

    assert not TrainingRun.objects.exists()


# --- no absolute run folder on a curator's page or API ---------------------------------------


def test_curators_see_the_run_folder_relative_never_the_workers_path(
    ready_version, curator_client, settings
) -> None:
    run = services.training_run_start(
        version=ready_version, config={}, created_by=None, enqueue=False
    )
    grid = services.experiment_grid_start(
        version=ready_version, backbones=["resnet"], losses=["emd"], epochs=1,
        created_by=None, enqueue=False,
    )  # fmt: skip
    grid.report_dir = str(services.grid_dir_for(grid))
    grid.save(update_fields=["report_dir"])
    root = str(settings.TRAINING_RUNS_ROOT)

    bodies = {
        url: curator_client.get(url).content.decode()
        for url in (
            "/api/training-runs/",
            f"/api/training-runs/{run.pk}/",
            f"/training/{run.pk}/",
            "/api/experiment-grids/",
            f"/api/experiment-grids/{grid.pk}/",
            f"/training/grids/{grid.pk}/",
        )
    }
    detail = curator_client.get(f"/api/training-runs/{run.pk}/").json()

    assert {url: root in body for url, body in bodies.items()} == dict.fromkeys(bodies, False)
    assert "checkpoint_dir" not in detail
    assert re.fullmatch(rf"{run.pk}-[0-9a-f]{{8}}", detail["run_folder"])
    assert detail["run_folder"] in bodies[f"/training/{run.pk}/"]


def test_a_grids_report_files_are_served_to_curators_from_the_runs_storage(
    ready_version, curator_client, make_user, settings
) -> None:
    grid = services.experiment_grid_start(
        version=ready_version, backbones=["resnet"], losses=["emd"], epochs=1,
        created_by=None, enqueue=False,
    )  # fmt: skip
    url = f"/training/grids/{grid.pk}/report/"
    assert curator_client.get(url + "report.md").status_code == 404  # not written yet
    services.experiment_grid_finish(grid_id=grid.pk)  # no run finished: a report all the same
    grid.refresh_from_db()
    assert grid.report_dir == f"grids/{grid.pk}"
    stored = Path(settings.TRAINING_RUNS_ROOT) / "grids" / str(grid.pk) / "report.md"
    answer = curator_client.get(url + "report.md")
    assert answer.status_code == 200 and answer.content == stored.read_bytes()
    assert b"0 of 1 settings finished" in answer.content
    page = curator_client.get(url + "report.html")
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page["Content-Security-Policy"]  # no script runs in it
    # Only the report's own files: no other name of the runs folder, no way out of it.
    (stored.parent / "notes.txt").write_text("x")
    for name in ("notes.txt", "..%2Freport.md", ".report.md.tmp", "report.md%00"):
        assert curator_client.get(url + name).status_code in (400, 404), name  # NUL: 400
    expert = Client()
    expert.force_login(make_user("expert"))
    assert expert.get(url + "report.md").status_code == 403
