import pytest

from alrun.config.schema import RunSpec, run_spec_from_dict
from alrun.core.errors import ConfigError


@pytest.mark.parametrize("key,value,fragment", [
    ("pool_fraction", 0, "pool_fraction=0"),
    ("pool_fraction", 1.5, "(0, 1]"),
    ("query_size", 0, "query_size"),
    ("mc_samples", 0, "mc_samples"),
    ("lambda", 1.2, "lambda=1.2"),
    ("delta", -1, "delta"),
    ("epochs", 0, "epochs"),
    ("device", "tpu", "device"),
])
def test_bad_values_give_one_sentence(key, value, fragment):
    with pytest.raises(ConfigError) as err:
        run_spec_from_dict({key: value})
    message = str(err.value)
    assert fragment in message and "\n" not in message


def test_stop_on_names_what_is_allowed():
    with pytest.raises(ConfigError, match=r"train.stop_on=loss. is not allowed: choose one of nll, accuracy"):
        run_spec_from_dict({"train": {"stop_on": "loss"}})
    assert run_spec_from_dict({"train": {"stop_on": "accuracy"}}).train.stop_on == "accuracy"


def test_unknown_heuristic_and_key():
    with pytest.raises(ConfigError, match="choose one of"):
        run_spec_from_dict({"heuristic": {"name": "nope"}})
    with pytest.raises(ConfigError, match="unknown setting `model.colour`"):
        run_spec_from_dict({"model": {"colour": 1}})


def test_paper_names_map_to_spec():
    spec = run_spec_from_dict({"lambda": 0.1, "delta": 2, "epochs": 7, "heuristic": {"name": "entropy"}})
    assert isinstance(spec, RunSpec)
    assert (spec.label_noise, spec.imbalance_classes, spec.train.epochs, spec.heuristic) == (0.1, 2, 7, "entropy")


@pytest.mark.parametrize("heuristic", ["bald", "variation_ratios", "batchbald", "power_bald"])
def test_heuristics_that_need_mc_samples_refuse_one_sample_or_no_dropout(heuristic):
    with pytest.raises(ConfigError, match=r"^`mc_samples=1` is not allowed: .* at least 2\.$"):
        run_spec_from_dict({"heuristic": {"name": heuristic}, "mc_samples": 1})
    with pytest.raises(ConfigError, match=r"^`model.dropout=0` is not allowed: .*dropout above 0\.$"):
        run_spec_from_dict({"heuristic": {"name": heuristic}, "model": {"dropout": 0}})


def test_heuristics_without_mc_disagreement_accept_one_sample_or_no_dropout():
    # random ignores the model; entropy and margin read the predictive mean (a deterministic model's, here)
    for heuristic in ("random", "entropy", "margin"):
        spec = run_spec_from_dict({"heuristic": {"name": heuristic}, "mc_samples": 1, "model": {"dropout": 0}})
        assert spec.mc_samples == 1 and spec.model.dropout == 0


@pytest.mark.parametrize("train,fragment", [
    ({"schedule": "early_stopping"}, "`train.validation_size=0` is not allowed: train.schedule=early_stopping"),
    ({"schedule": "early_stopping", "validation_size": 20, "patience": 0}, "`train.patience=0`"),
    ({"schedule": "early_stopping", "validation_size": -1}, "non-negative"),
])
def test_early_stopping_settings_are_checked(train, fragment):
    with pytest.raises(ConfigError) as err:
        run_spec_from_dict({"train": train})
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_validation_set_counts_against_the_pool():
    from alrun.config.schema import check_against_data

    spec = run_spec_from_dict({"train": {"schedule": "early_stopping", "validation_size": 90}, "initial_labelled": 10})
    with pytest.raises(ConfigError, match="90 of them for validation"):
        check_against_data(spec, 100, 10)
    with pytest.raises(ConfigError, match="`initial_balanced=yes`"):
        run_spec_from_dict({"initial_balanced": "yes"})


def test_validation_set_only_with_early_stopping():
    # a scale's validation_size stays set when a study switches to the fixed schedule: then nothing is held out
    assert run_spec_from_dict({"train": {"validation_size": 20}}).train.n_validation == 0
    spec = run_spec_from_dict({"train": {"validation_size": 20, "schedule": "early_stopping"}})
    assert spec.train.n_validation == 20
