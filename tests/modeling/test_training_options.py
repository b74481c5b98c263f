"""Training options have one owner: TrainConfig's fields. The web form, the API serializer
(and its OpenAPI schema) and the CLI flags are generated from them, so their defaults, bounds
and help are equal, an option added to the config appears on all three, and a recipe fills
only the options a user leaves unset."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import CommandError
from django.core.validators import MaxValueValidator, MinValueValidator
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from datasets.models import DatasetVersion
from frontend.training_views import ExperimentGridForm, TrainingRunForm, training_request_form
from modeling.api import (
    ExperimentGridCreateSerializer,
    TrainingRunCreateSerializer,
    training_request_serializer,
)
from modeling.management.commands import experiment_grid, train
from modeling.ml.options import RECIPES, option, train_options
from modeling.ml.train import TRAIN_OPTIONS, TrainConfig
from modeling.models import ExperimentGrid, TrainingRun
from tests.conftest import PASSWORD


def _parser(command: Any) -> argparse.ArgumentParser:
    return command.Command().create_parser("manage.py", command.__name__.rsplit(".", 1)[1])


def _parser_defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    return {a.dest: a.default for a in parser._actions}


def _form_bounds(field: Any) -> tuple[Any, Any]:
    low = [v.limit_value for v in field.validators if isinstance(v, MinValueValidator)]
    high = [v.limit_value for v in field.validators if isinstance(v, MaxValueValidator)]
    return (low or [None])[0], (high or [None])[0]


def test_the_form_the_api_schema_and_the_cli_have_the_same_defaults_bounds_and_help() -> None:
    form = TrainingRunForm.base_fields
    api = TrainingRunCreateSerializer().fields
    schema = SchemaGenerator().get_schema(request=None, public=True)
    properties = schema["components"]["schemas"]["TrainingRunCreate"]["properties"]
    cli = {a.dest: a for a in _parser(train)._actions}
    assert len(TRAIN_OPTIONS) >= 15
    for opt in TRAIN_OPTIONS:
        default = opt.surface_default
        assert form[opt.name].initial == default, opt.name
        assert api[opt.name].default == default, opt.name
        assert cli[opt.name].default == default, opt.name
        # The schema says the default wherever there is one to say.
        assert properties[opt.name].get("default") == default, opt.name
        assert properties[opt.name]["description"].startswith(opt.help), opt.name  # + choices
        assert form[opt.name].help_text == api[opt.name].help_text == opt.help, opt.name
        assert opt.help in cli[opt.name].help, opt.name
        if opt.kind in (int, float):
            bounds = (opt.spec.min, opt.spec.max)
            assert _form_bounds(form[opt.name]) == bounds, opt.name
            assert (api[opt.name].min_value, api[opt.name].max_value) == bounds, opt.name
            schema_bounds = (
                properties[opt.name].get("minimum"),
                properties[opt.name].get("maximum"),
            )
            assert schema_bounds == bounds, opt.name
        if opt.spec.choices:
            assert [v for v, _ in form[opt.name].choices] == list(opt.spec.choices)
            assert list(api[opt.name].choices) == list(opt.spec.choices)
            assert tuple(cli[opt.name].choices) == opt.spec.choices


def test_the_grid_surfaces_offer_every_option_but_backbone_and_loss() -> None:
    grid_options = {o.name for o in TRAIN_OPTIONS} - {"backbone", "loss"}
    form = set(ExperimentGridForm.base_fields)
    api = set(ExperimentGridCreateSerializer().fields)
    cli = _parser_defaults(_parser(experiment_grid))
    assert grid_options <= form and grid_options <= api and grid_options <= set(cli)
    assert not {"backbone", "loss"} & (form | api | set(cli))
    for opt in TRAIN_OPTIONS:
        if opt.name in grid_options:
            assert cli[opt.name] == opt.surface_default


def test_the_defaults_are_the_benchmarks_best_small_preset_setting_not_the_papers() -> None:
    # benchmarks/training.py: AdamW lr 3e-4, head at 20x, weight decay 0.05, batch 16 (the
    # small preset's), at most 40 epochs, patience 10, no fair sampling.
    config = TrainConfig()
    assert (config.optimizer, config.lr, config.head_lr_scale) == ("adamw", 3e-4, 20.0)
    assert (config.weight_decay, config.resolved_batch_size, config.epochs) == (0.05, 16, 40)
    assert config.early_stopping_patience == 10 and config.fair_sampling is False
    paper = TrainConfig.from_options(RECIPES["paper"])
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay) == (
        "sgd", 1e-3, 0.9, 5e-4,
    )  # fmt: skip
    assert (paper.epochs, paper.early_stopping_patience, paper.fair_sampling) == (1000, 50, True)
    assert paper.head_lr_scale == 1.0


@dataclass(frozen=True)
class _ConfigWithDropout(TrainConfig):
    dropout: float = option(0.25, "dropout before the head", min=0.0, max=0.9)


def test_an_option_added_to_the_config_appears_in_the_form_the_api_and_the_cli() -> None:
    options = train_options(_ConfigWithDropout)
    assert [o.name for o in options] == [*(o.name for o in TRAIN_OPTIONS), "dropout"]

    form = training_request_form("DropoutForm", options)
    field = form.base_fields["dropout"]
    assert field.initial == 0.25 and _form_bounds(field) == (0.0, 0.9)
    assert field.help_text == "dropout before the head"
    assert not form({"dropout": "1.5"}).is_valid()

    serializer = training_request_serializer("DropoutSerializer", options)
    field = serializer().fields["dropout"]
    assert field.default == 0.25 and (field.min_value, field.max_value) == (0.0, 0.9)
    assert field.help_text == "dropout before the head"

    parser = argparse.ArgumentParser(exit_on_error=False)
    train.add_training_options(parser, options)
    assert parser.get_default("dropout") == 0.25
    assert parser.parse_args(["--dropout", "0.5"]).dropout == 0.5
    with pytest.raises(argparse.ArgumentError, match=r"above the maximum, 0\.9"):
        parser.parse_args(["--dropout", "1.5"])

    # The real surfaces stay as they are: the dropout came from the extended config alone.
    assert "dropout" not in TrainingRunForm.base_fields
    assert "dropout" not in TrainingRunCreateSerializer().fields
    assert "dropout" not in _parser_defaults(_parser(train))


def _cli_config(*argv: str) -> dict[str, Any]:
    options = vars(_parser(train).parse_args(["--dataset", "v1", *argv]))
    return train.training_options(options)


def test_the_cli_recipe_fills_the_flags_not_given_and_a_given_flag_wins_even_at_its_default() -> (
    None
):
    assert _cli_config() == {}  # every option takes the config's default
    config = TrainConfig.from_options(_cli_config("--recipe", "paper", "--epochs", "3"))
    assert (config.optimizer, config.lr, config.epochs, config.fair_sampling) == (
        "sgd", 1e-3, 3, True,
    )  # fmt: skip
    # --lr 3e-4 is the default, but given: it beats the recipe's 1e-3.
    config = TrainConfig.from_options(_cli_config("--recipe", "paper", "--lr", "3e-4"))
    assert config.lr == 3e-4 and config.epochs == 1000
    config = TrainConfig.from_options(_cli_config("--patience", "0", "--no-fair-sampling"))
    assert config.early_stopping_patience is None and config.fair_sampling is False
    with pytest.raises(CommandError, match="--epochs: 0 is below the minimum, 1"):
        _cli_config("--epochs", "0")  # below the option's minimum, refused by the parser


@pytest.fixture
def curator(make_user) -> APIClient:
    client = APIClient()
    assert client.login(username=make_user("curator").username, password=PASSWORD)
    return client


def test_the_api_starts_a_run_with_the_defaults_and_with_the_paper_recipe(
    curator: APIClient, version: DatasetVersion
) -> None:
    response = curator.post("/api/training-runs/", {"dataset": version.name}, format="json")
    assert response.status_code == 201, response.json()
    defaults = TrainingRun.objects.get(pk=response.json()["id"]).config
    assert defaults == TrainConfig().to_dict()

    response = curator.post(
        "/api/training-runs/",
        {"dataset": version.name, "recipe": "paper", "epochs": 5, "weight_decay": 0.05},
        format="json",
    )
    assert response.status_code == 201, response.json()
    config = TrainingRun.objects.get(pk=response.json()["id"]).config
    assert (config["optimizer"], config["lr"], config["early_stopping_patience"]) == (
        "sgd", 1e-3, 50,
    )  # fmt: skip
    assert config["epochs"] == 5 and config["weight_decay"] == 0.05  # given, so kept

    response = curator.post(
        "/api/experiment-grids/",
        {"dataset": version.name, "recipe": "paper", "backbones": ["resnet"], "losses": ["emd"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    grid = ExperimentGrid.objects.get(pk=response.json()["id"])
    assert grid.epochs == 1000 and grid.runs.get().config["optimizer"] == "sgd"


def test_the_page_applies_a_recipe_to_the_options_left_at_their_default(
    curator: APIClient, version: DatasetVersion, django_capture_on_commit_callbacks
) -> None:
    page = curator.get("/training/")
    assert b'name="recipe"' in page.content and b'value="0.0003"' in page.content
    initial = {
        name: field.initial
        for name, field in TrainingRunForm.base_fields.items()
        if field.initial is not None and not isinstance(field.initial, bool)
    }
    form = {**initial, "dataset": version.name, "recipe": "paper", "lr": "0.01", "augment": "on"}
    with django_capture_on_commit_callbacks(execute=False):
        response = curator.post("/training/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    config = TrainingRun.objects.get().config
    assert config["lr"] == 0.01  # changed on the page: kept
    assert (config["optimizer"], config["epochs"], config["fair_sampling"]) == (
        "sgd", 1000, True,
    )  # left at the default shown: the recipe's  # fmt: skip
