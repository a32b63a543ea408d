import pytest

from alrun.config import RunSpec, run_spec_from_dict
from alrun.errors import ConfigError


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


def test_unknown_heuristic_and_key():
    with pytest.raises(ConfigError, match="choose one of"):
        run_spec_from_dict({"heuristic": {"name": "nope"}})
    with pytest.raises(ConfigError, match="not a known setting"):
        run_spec_from_dict({"model": {"colour": 1}})


def test_paper_names_map_to_spec():
    spec = run_spec_from_dict({"lambda": 0.1, "delta": 2, "epochs": 7, "heuristic": {"name": "entropy"}})
    assert isinstance(spec, RunSpec)
    assert (spec.label_noise, spec.imbalance_classes, spec.train.epochs, spec.heuristic) == (0.1, 2, 7, "entropy")
