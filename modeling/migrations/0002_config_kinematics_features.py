"""Stored training configs name the model's kinematics input ``kinematics_features``.

TrainConfig's ``speed_features`` became ``kinematics_features`` (checkpoint format 2, see
modeling/ml/train.py): the key is renamed in every stored run config and grid base config, so
that the pages and the API show one name and TrainConfig.from_dict reads every row. The fold
models of runs trained before stay format 1 and are refused by name when loaded.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

OLD, NEW = "speed_features", "kinematics_features"


def _renamed(config: Any, old: str, new: str) -> Any:
    if not isinstance(config, dict) or old not in config:
        return None
    return {(new if key == old else key): value for key, value in config.items()}


def _rename(apps: Any, old: str, new: str) -> None:
    for model_name, field in (("TrainingRun", "config"), ("ExperimentGrid", "base_config")):
        model = apps.get_model("modeling", model_name)
        for row in model.objects.only("pk", field).iterator():
            renamed = _renamed(getattr(row, field), old, new)
            if renamed is not None:
                model.objects.filter(pk=row.pk).update(**{field: renamed})


def forwards(apps: Any, schema_editor: Any) -> None:
    _rename(apps, OLD, NEW)


def backwards(apps: Any, schema_editor: Any) -> None:
    _rename(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("modeling", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
