"""The training options' one table: every option a user may set is a ``TrainConfig`` field
declared with :func:`option` (its default, bounds or choices, and help), and the web form, the
API serializer and the CLI flags are generated from :func:`train_options` (so their defaults,
bounds and help are equal by construction). A field declared with a plain default is config
only (set in code, never on a surface).

A recipe is a named set of overrides applied to the defaults; the options a user gives
explicitly override the recipe (:func:`recipe_overrides`).
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

_METADATA_KEY = "train_option"


@dataclass(frozen=True)
class OptionSpec:
    """What a surface needs besides the field's name, type and default."""

    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    label: str | None = None
    flag: str | None = None  # a shorter CLI spelling kept beside --the-field-name
    # The surfaces' spelling of the config's None, for a field whose None means "off"
    # (early-stopping patience: 0 on the surfaces, None in the config).
    off: Any = None
    max_length: int | None = None  # text options


@dataclass(frozen=True)
class TrainOption:
    """One option as the surfaces see it. ``kind`` is int, float, str or bool; ``nullable``
    options accept a blank (None: the config resolves it, e.g. by preset)."""

    name: str
    kind: type
    default: Any
    nullable: bool
    spec: OptionSpec

    @property
    def help(self) -> str:
        return self.spec.help

    @property
    def surface_default(self) -> Any:
        """The default as the surfaces spell it (``off`` for a None that means off)."""
        if self.default is None and self.spec.off is not None:
            return self.spec.off
        return self.default

    @property
    def blank_allowed(self) -> bool:
        """Whether a surface takes a blank (None) for the config to resolve (by preset);
        an option with an ``off`` spelling takes that instead."""
        return self.nullable and self.spec.off is None

    def to_config(self, value: Any) -> Any:
        """A surface's value as the config's (``off`` becomes None)."""
        if self.spec.off is not None and value == self.spec.off:
            return None
        return value


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    label: str | None = None,
    flag: str | None = None,
    off: Any = None,
    max_length: int | None = None,
) -> Any:
    """A ``TrainConfig`` field that the surfaces offer (``dataclasses.field`` with metadata)."""
    spec = OptionSpec(
        help=help, min=min, max=max, choices=choices, label=label, flag=flag, off=off,
        max_length=max_length,
    )  # fmt: skip
    return field(default=default, metadata={_METADATA_KEY: spec})


def _kind(annotation: Any) -> tuple[type, bool]:
    """(int | float | str | bool, nullable) of a field annotation such as ``int | None``."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    members = [a for a in args if a is not type(None)] if args else [annotation]
    if len(members) != 1 or members[0] not in (int, float, str, bool):
        raise TypeError(f"a training option must be int, float, str or bool, not {annotation}")
    return members[0], bool(args)


def train_options(config_cls: type) -> tuple[TrainOption, ...]:
    """The options of ``config_cls`` (a dataclass), in field order."""
    hints = typing.get_type_hints(config_cls)
    table = []
    for f in fields(config_cls):
        spec = f.metadata.get(_METADATA_KEY)
        if spec is None:
            continue
        kind, nullable = _kind(hints[f.name])
        default = _default(f)
        table.append(TrainOption(f.name, kind, default, nullable, spec))
    return tuple(table)


def _default(f: Field[Any]) -> Any:
    if f.default is MISSING:
        raise TypeError(f"training option {f.name} needs a default")
    return f.default


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(option: TrainOption, noun: str) -> str:
    low, high = option.spec.min, option.spec.max
    if low is not None and high is not None:
        return f"{noun} from {_bound(low)} to {_bound(high)}"
    if low is not None:
        return f"{noun} of at least {_bound(low)}"
    if high is not None:
        return f"{noun} of at most {_bound(high)}"
    return noun


def option_value_problem(option: TrainOption, value: Any) -> str | None:
    """Why ``value`` (as the surfaces spell it) is no valid value of ``option``: the wrong
    kind, outside the option's bounds, not finite or too long; None if valid.

    The web form, the API serializer and the CLI flags check the same bounds themselves; this
    is the one check that a config from anywhere else (a grid's base config, a caller of the
    services) passes too, so no run starts with a batch of a million clips or a seed that
    no column holds."""
    name = option.name
    if value is None or (option.spec.off is not None and value == option.spec.off):
        return None if option.nullable else f"{name} must be given"
    if option.kind is bool:
        return None if isinstance(value, bool) else f"{name} must be true or false, not {value!r}"
    if option.spec.choices:  # TrainConfig names the valid choices itself (get_preset, ...)
        return None
    if option.kind is str:
        if not isinstance(value, str):
            return f"{name} must be text, not {value!r}"
        if option.spec.max_length is not None and len(value) > option.spec.max_length:
            return f"{name} must be at most {option.spec.max_length} characters long"
        return None
    whole = option.kind is int
    noun = "a whole number" if whole else "a finite number"
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        return f"{name} must be {_range_text(option, noun)}, not {value!r}"
    number = float(value) if not whole else value
    if not whole and not math.isfinite(number):
        return f"{name} must be {_range_text(option, noun)}, not {value!r}"
    low, high = option.spec.min, option.spec.max
    if (low is not None and number < low) or (high is not None and number > high):
        shown = value if len(str(value)) <= 24 else f"{str(value)[:12]}..."
        return f"{name} must be {_range_text(option, noun)}, not {shown}"
    return None


def options_problems(values: dict[str, Any], options: tuple[TrainOption, ...]) -> list[str]:
    """`option_value_problem` of every option in ``values`` (others are not options)."""
    by_name = {option.name: option for option in options}
    return [
        problem
        for name, value in values.items()
        if name in by_name and (problem := option_value_problem(by_name[name], value))
    ]


# A pretrained weights file or folder is named, never given as a path: the name of an entry
# of the training workers' weights folder (MERSV_WEIGHTS_DIR), so no curator can make a worker
# open, or tell apart, an arbitrary path.
WEIGHTS_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def weights_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an entry of the weights folder (None if it can)."""
    if WEIGHTS_NAME_PATTERN.fullmatch(name) and ".." not in name:
        return None
    return (
        f"pretrained must be the name of weights in the weights folder (letters, digits, "
        f"'.', '_', '-'; up to 128 characters, no folders), not {name[:40]!r}"
    )


# The paper's recipe (PAPER.md): SGD lr 1e-3, momentum 0.9, weight decay 5e-4, one learning
# rate, 1000 epochs, balanced grade-mode classes; early stopping after 50 epochs without a
# better val loss. With the small presets on a CPU this takes hours; the defaults are what
# benchmarks/training.py found best there. Batch sizes stay the preset's.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "head_lr_scale": 1.0,
        "epochs": 1000,
        "early_stopping_patience": 50,
        "fair_sampling": True,
    },
}
RECIPE_HELP = (
    "a named set of options applied to the defaults; the options you set yourself override "
    "it. paper: the paper's SGD lr 1e-3, momentum 0.9, weight decay 5e-4, 1000 epochs, "
    "patience 50, fair sampling (hours on a CPU)"
)


def recipe_overrides(recipe: str | None) -> dict[str, Any]:
    """The option values ``recipe`` sets (none for no recipe), or a ValueError naming the
    recipes there are."""
    if recipe in (None, ""):
        return {}
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
    return dict(RECIPES[recipe])
