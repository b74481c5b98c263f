"""The retirement benchmark's video-model prior (benchmarks/retirement_pixel.py and
retirement.py --prior-file): predictions keyed back to the generator's clips, and panel seeds
whose votes are new draws on the same clips."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotation.aggregation.distributions import emd
from annotation.grades import PROB_COLUMNS
from benchmarks import retirement
from benchmarks.retirement_pixel import config_from_record, generator_config, prior_write
from simulator.synthetic import clip_ids


def _tables(tmp_path: Path, predicted: list[str]) -> tuple[Path, Path, Path]:
    data, export = tmp_path / "data", tmp_path / "export"
    data.mkdir()
    export.mkdir()
    at = {"c0001": (10.0, 20.0), "c0002": (30.5, 40.25), "c0003": (50.0, 60.0)}
    pd.DataFrame(
        {"clip_id": list(at), "x": [p[0] for p in at.values()], "y": [p[1] for p in at.values()]}
    ).to_csv(data / "clips.csv", index=False)
    # The export's pseudonyms, in another order than the generator's ids.
    pseudonyms = {"k9": "c0002", "k1": "c0003", "k5": "c0001"}
    pd.DataFrame(
        {
            "clip_id": list(pseudonyms),
            "x": [at[c][0] for c in pseudonyms.values()],
            "y": [at[c][1] for c in pseudonyms.values()],
        }
    ).to_csv(export / "clips.csv", index=False)
    pd.DataFrame({"clip_id": ["k9", "k1", "k5"], "fold": [2, 0, 1]}).to_csv(
        export / "splits.csv", index=False
    )
    one_hot = {"k9": 0, "k1": 3, "k5": 4}  # the grade each clip's prediction puts all mass on
    predictions = pd.DataFrame(
        [[k, *np.eye(5)[one_hot[k]]] for k in predicted], columns=["clip_id", *PROB_COLUMNS]
    )
    path = tmp_path / "oof.csv"
    predictions.to_csv(path, index=False)
    return data, export, path


def test_the_prior_file_keys_each_prediction_and_fold_by_the_generators_clip(
    tmp_path: Path,
) -> None:
    data, export, predictions = _tables(tmp_path, ["k9", "k1", "k5"])
    out = tmp_path / "prior.npz"
    prior_write(out, export=export, data=data, predictions=predictions, info={"epochs": 2})
    saved = np.load(out)
    assert saved["clip_ids"].tolist() == ["c0001", "c0002", "c0003"]
    assert saved["q"].argmax(axis=1).tolist() == [4, 0, 3]
    assert saved["folds"].tolist() == [1, 2, 0]
    assert config_from_record(str(saved["config"])) == generator_config()
    assert json.loads(str(saved["info"])) == {"epochs": 2}


def test_an_exported_clip_without_a_prediction_is_refused(tmp_path: Path) -> None:
    data, export, predictions = _tables(tmp_path, ["k9", "k5"])
    with pytest.raises(SystemExit, match="1 exported clips have no prediction"):
        prior_write(
            tmp_path / "prior.npz", export=export, data=data, predictions=predictions, info={}
        )
    assert not (tmp_path / "prior.npz").exists()


def test_panel_seeds_are_new_votes_on_the_same_clips_and_unpredicted_clips_get_no_prior(
    tmp_path: Path,
) -> None:
    config = generator_config()
    from simulator.synthetic import sample_labels

    expected = sample_labels(config=config).truth_clips[list(PROB_COLUMNS)].to_numpy()
    ids = np.asarray(clip_ids(config.n_clips))
    kept = np.arange(config.n_clips) >= 5  # the first five clips "lost by the tracker"
    np.savez(
        tmp_path / "prior.npz",
        clip_ids=ids[kept],
        q=expected[kept],  # a prior as good as the panel's expected distribution
        folds=np.arange(config.n_clips)[kept] % 3,
        config=np.asarray(json.dumps(asdict(config))),
        info=np.asarray("{}"),
    )
    clips = retirement.clip_set_load(tmp_path / "prior.npz")
    assert clips.has_prior.tolist() == kept.tolist()
    first, second = (retirement.clip_set_panel(clips, seed) for seed in (0, 1))
    # Same clips: each seed's full panel scatters around the same expected distribution...
    for panel in (first, second):
        np.testing.assert_array_equal(panel.expected, expected)
        assert emd(panel.full, expected).mean() < 0.02
    # ...with votes of its own, apart from the draw the model trained on.
    assert not np.array_equal(first.full, second.full)
    assert not np.array_equal(first.full, clips.trained_on)
    weights = retirement.masked_weights(first, clips.q, clips.has_prior)
    assert (weights[~kept] == 0).all()
    assert (weights[kept] > 0).all()
