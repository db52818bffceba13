import pytest

from harness.models.backbones import BACKBONES
from harness.core.errors import ConfigError
from harness.core.config import TrialConfig


def test_unknown_backbone_lists_close_matches_first():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnt20'; choose from: resnet20, "):
        BACKBONES.get("resnt20")


@pytest.mark.parametrize("field,value,message", [
    ("lr", -1, "lr=-1.0: must be > 0"),
    ("batch_size", 0, "batch_size=0: must be >= 1"),
    ("dropout", 1.5, "dropout=1.5: must be in [0, 1)"),
    ("optimizer", "adam", "optimizer='adam': choose from: sgd, adamw"),
    ("epochs", 2.5, "epochs=2.5: must be an int"),
])
def test_bad_hyperparameters_name_field_value_and_allowed(field, value, message):
    with pytest.raises(ConfigError) as e:
        TrialConfig.from_dict({field: value})
    assert str(e.value) == message


def test_unknown_hyperparameter_is_refused():
    with pytest.raises(ConfigError, match="unknown hyperparameter 'learning_rate'"):
        TrialConfig.from_dict({"learning_rate": 0.1})


def test_identity_is_stable_and_ignores_the_test_switch():
    a = TrialConfig(lr=0.1)
    assert a.identity() == TrialConfig.from_dict({"lr": "0.1"}).identity()
    assert a.identity() == a.replace(evaluate_test=True).identity()
    assert a.identity() != a.replace(seed=1).identity()
