"""A checkpoint whose config.json sets a dropout is run without it (eval mode); vpkit says so on loading."""
import warnings

import pytest

from vpkit.models import tiny_config
from vpkit.models.mplug_owl2_config import MPLUGOwl2Config


def config_dict(**visual_model):
    data = tiny_config(64).to_dict()
    data["visual_config"]["visual_model"].update(visual_model)
    return data


def test_the_default_dropouts_of_zero_load_silently():
    data = config_dict(attention_dropout=0.0)
    data["visual_config"]["visual_abstractor"]["attention_probs_dropout_prob"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MPLUGOwl2Config.from_dict(data, source="model/config.json")


@pytest.mark.parametrize(
    "where, key",
    [("visual_model", "attention_dropout"), ("visual_abstractor", "attention_probs_dropout_prob"), (None, "attention_dropout")],
)
def test_a_non_zero_dropout_is_warned_about(where, key):
    data = config_dict()
    (data["visual_config"][where] if where else data)[key] = 0.1
    prefix = f"visual_config.{where}." if where else ""
    with pytest.warns(UserWarning, match=rf"model/config.json: {prefix}{key} = 0.1: vpkit runs the frozen model in eval"):
        MPLUGOwl2Config.from_dict(data, source="model/config.json")
