"""The MC probe (alrun.model.mc_probe): every model that runs gives reproducible, genuinely stochastic MC samples
or is refused with a reason. One test model per case of issue 21, written the way tutorials write them,
in a user package alrun has never seen (written into a temporary folder and put on the path)."""

from __future__ import annotations

import logging
import os
import sys
import textwrap

import pandas as pd
import pytest
import torch

from alrun.config.schema import ModelSpec, run_spec_from_dict
from alrun.core.errors import ModelError
from alrun.core.seeding import seed_global
from alrun.loop.job import ActiveLearningJob
from alrun.model.builders import SeededDropout, build_model
from alrun.model.mc_probe import check_mc, functional_dropout_calls, probe_job_model
from tests.conftest import REPO, THREADS, run_alrun, steps_without_timings

NETS = '''
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _width(input_shape):
    return int(torch.tensor(input_shape).prod())


class TiedFunctional(nn.Module):
    """The tutorials' functional dropout, following the module's mode; an nn.Dropout too unless module=False."""

    def __init__(self, n_classes, input_shape, hidden=32, module=True):
        super().__init__()
        self.fc1 = nn.Linear(_width(input_shape), hidden)
        self.drop = nn.Dropout(0.5) if module else nn.Identity()
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        h = F.dropout(h, 0.5, training=self.training)
        return self.fc2(self.drop(h))


class AlwaysOnFunctional(nn.Module):
    """nn.Dropout plus the common F.dropout(x, p, training=True), which draws from torch's global generator."""

    def __init__(self, n_classes, input_shape, hidden=32):
        super().__init__()
        self.fc1 = nn.Linear(_width(input_shape), hidden)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        h = F.dropout(h, p=0.3, training=True)
        return self.fc2(self.drop(h))


def zero_dropout(n_classes, input_shape):
    """A hard-coded nn.Dropout(0.0), whatever model.dropout says."""
    return nn.Sequential(nn.Flatten(), nn.Linear(_width(input_shape), 32), nn.ReLU(), nn.Dropout(0.0),
                         nn.Linear(32, n_classes))


class LockedDropout(nn.Dropout):
    """Locked (variational) dropout: one mask per item, shared over the sequence. x: [B, L, D], mask [B, 1, D]."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        mask = torch.empty(x.shape[0], 1, x.shape[2], dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * mask / (1 - self.p)


class SequenceNet(nn.Module):
    """Feature vectors read as `steps` steps of D features, locked dropout over them, mean over the steps."""

    def __init__(self, n_classes, input_shape, steps=4, hidden=16):
        super().__init__()
        self.steps = steps
        self.embed = nn.Linear(_width(input_shape) // steps, hidden)
        self.drop = LockedDropout(0.5)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        x = x.flatten(1)
        x = x[:, : x.shape[1] // self.steps * self.steps].reshape(x.shape[0], self.steps, -1)
        return self.out(self.drop(torch.relu(self.embed(x))).mean(dim=1))


def no_dropout(n_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(_width(input_shape), 32), nn.ReLU(), nn.Linear(32, n_classes))


class Spellings(nn.Module):
    """Functional dropout spelt three ways, and a module named `dropout` (not functional)."""

    def __init__(self, n_classes, input_shape):
        super().__init__()
        self.fc = nn.Linear(_width(input_shape), n_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        from torch.nn.functional import dropout

        # F.dropout(x) in a comment is not a call
        h = torch.nn.functional.dropout(x.flatten(1), 0.1, self.training)
        h = dropout(h, 0.1, training=True)
        h = torch.nn.functional.alpha_dropout(h, 0.1, True)
        return self.fc(self.dropout(h))


class NumpyNoise(nn.Module):
    """Noise from numpy's global generator in forward, which alrun does not seed."""

    def __init__(self, n_classes, input_shape):
        super().__init__()
        self.fc = nn.Linear(_width(input_shape), n_classes)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        noise = torch.from_numpy(np.random.normal(size=x.shape[-1]).astype("float32"))
        return self.fc(self.drop(x.flatten(1) + noise))
'''

D, C = 64, 10  # digits: 64 features, 10 classes


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_site")
    (root / "userprobe").mkdir()
    (root / "userprobe" / "__init__.py").write_text("")
    (root / "userprobe" / "nets.py").write_text(textwrap.dedent(NETS))
    return root


@pytest.fixture
def user_pkg(package_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(package_dir))
    yield package_dir / "userprobe" / "nets.py"
    for name in [m for m in sys.modules if m == "userprobe" or m.startswith("userprobe.")]:
        del sys.modules[name]


def user_env(package_dir) -> dict[str, str]:
    return {**THREADS, "PYTHONPATH": os.pathsep.join([str(REPO), str(package_dir)])}


def built(name: str, **args) -> torch.nn.Module:
    return build_model(ModelSpec(name="custom", target=f"userprobe.nets.{name}", args=args), (D,), C, seed=0)


def probe(model, heuristic="bald", mc_samples=5, name="`model._target_=m`"):
    x = torch.randn(8, D, generator=torch.Generator().manual_seed(0))
    return check_mc(model, x, heuristic, mc_samples, seed=0, model_name=name)


TIED, ALWAYS_ON = "h = F.dropout(h, 0.5", "h = F.dropout(h, p=0.3"  # the two call sites in NETS


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".")


# ---------------------------------------------------------------- in-process, one model per case


def test_functional_dropout_is_found_with_its_file_and_line(user_pkg):
    calls = functional_dropout_calls(built("TiedFunctional"))
    assert [(c.file, c.line) for c in calls] == [(str(user_pkg), line_of(user_pkg, TIED))]
    assert calls[0].tied_to_training and calls[0].call == "F.dropout(h, 0.5, training=self.training)"
    (call,) = functional_dropout_calls(built("AlwaysOnFunctional"))
    assert not call.tied_to_training and call.line == line_of(user_pkg, ALWAYS_ON)
    # torch's and alrun's modules, and `self.drop(h)` calls, are not functional dropout
    assert functional_dropout_calls(built("zero_dropout")) == []
    assert functional_dropout_calls(built("SequenceNet")) == []


def test_functional_dropout_spellings(user_pkg):
    calls = functional_dropout_calls(built("Spellings"))
    assert [c.call for c in calls] == ["torch.nn.functional.dropout(x.flatten(1), 0.1, self.training)",
                                       "dropout(h, 0.1, training=True)",
                                       "torch.nn.functional.alpha_dropout(h, 0.1, True)"]
    assert [c.tied_to_training for c in calls] == [True, False, False]
    assert [c.line for c in calls] == [line_of(user_pkg, "h = torch.nn.functional.dropout"),
                                       line_of(user_pkg, "h = dropout(h"), line_of(user_pkg, "alpha_dropout(h")]


def test_tied_functional_dropout_beside_a_module_runs_with_a_warning(user_pkg, caplog):
    # the module's dropout makes the samples differ, so the probe passes: the warning is the signal
    with caplog.at_level(logging.WARNING, logger="alrun"):
        result = probe(built("TiedFunctional"))
    assert result.n_samples == 5 and result.stochastic and result.reproducible
    warnings = [r.getMessage() for r in caplog.records if "functional dropout" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{user_pkg}:{line_of(user_pkg, TIED)}" in warnings[0]
    assert "off while alrun draws MC samples" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alrun"):  # once per call site and process
        probe(built("TiedFunctional"))
    assert not [r for r in caplog.records if "functional dropout" in r.getMessage()]


def test_tied_functional_dropout_alone_is_refused_for_bald(user_pkg):
    with pytest.raises(ModelError) as err:
        probe(built("TiedFunctional", module=False))
    message = str(err.value)
    assert "gives identical MC-Dropout samples on a probe batch of 4 inputs" in message
    assert "heuristic=bald would score every candidate 0" in message
    assert f"functional dropout tied to self.training ({user_pkg}:{line_of(user_pkg, TIED)})" \
        in message
    assert one_sentence(message), message


def test_always_on_functional_dropout_is_reproducible_with_a_warning(user_pkg, caplog):
    with caplog.at_level(logging.WARNING, logger="alrun"):
        result = probe(built("AlwaysOnFunctional"))
    assert result.reproducible and result.stochastic and result.n_samples == 5
    (warning,) = [r.getMessage() for r in caplog.records if "functional dropout" in r.getMessage()]
    assert f"{user_pkg}:{line_of(user_pkg, ALWAYS_ON)}" in warning and "global generator" in warning


def test_zero_dropout_is_refused_for_bald_naming_the_rates(user_pkg):
    with pytest.raises(ModelError) as err:
        probe(built("zero_dropout"), name="`model._target_=userprobe.nets.zero_dropout`")
    message = str(err.value)
    assert message.startswith("`model._target_=userprobe.nets.zero_dropout` gives identical MC-Dropout samples")
    assert "every dropout rate of the layers it builds is 0 (p = 0)" in message and one_sentence(message)


def test_zero_dropout_runs_entropy_with_one_sample(user_pkg):
    assert probe(built("zero_dropout"), heuristic="entropy").n_samples == 1


def test_locked_dropout_subclass_is_kept_and_samples_vary_reproducibly(user_pkg, caplog):
    with caplog.at_level(logging.INFO, logger="alrun"):
        model = built("SequenceNet")
    assert type(model.drop).__name__ == "LockedDropout" and not isinstance(model.drop, SeededDropout)
    assert any("kept drop (LockedDropout) as written" in r.getMessage() for r in caplog.records)
    result = probe(model)
    assert result.reproducible and result.stochastic and result.n_samples == 5
    # its own forward runs while sampling: one mask per item over the steps (the rows of a sample agree on
    # which features are dropped)
    seen = []
    handle = model.drop.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    probe(model)
    handle.remove()
    x, out = seen[0]  # [B * T, L, D]
    assert ((out == 0) & (x != 0)).any()
    kept_bd = (out != 0).any(dim=1, keepdim=True)  # a feature kept at one step is kept at every step
    assert torch.equal(out != 0, kept_bd.expand_as(out) & (x != 0))


def test_locked_dropout_is_refused_for_batchbald_and_a_custom_batch_selector(user_pkg):
    with pytest.raises(ModelError) as err:
        probe(built("SequenceNet"), heuristic="batchbald")
    assert str(err.value).startswith("heuristic=batchbald needs one dropout mask per sample shared by every candidate")
    assert "keeps LockedDropout with its own forward" in str(err.value) and one_sentence(str(err.value))
    spec = run_spec_from_dict({"model": {"name": "custom", "_target_": "userprobe.nets.SequenceNet"},
                               "heuristic": {"name": "custom", "_target_": "a.select", "batch": True}})
    with pytest.raises(ModelError, match=r"^heuristic=custom with heuristic.batch=true needs one dropout mask"):
        probe_job_model(built("SequenceNet"), spec, (D,), torch.randn(8, D))
    spec = run_spec_from_dict({"model": {"name": "custom", "_target_": "userprobe.nets.SequenceNet"},
                               "heuristic": {"name": "custom", "_target_": "a.score"}})
    assert probe_job_model(built("SequenceNet"), spec, (D,), torch.randn(8, D)) == spec.mc_samples


@pytest.mark.parametrize("heuristic", ["random", "entropy", "margin"])
def test_no_dropout_runs_heuristics_without_mc_samples_at_t_1(user_pkg, caplog, heuristic):
    with caplog.at_level(logging.INFO, logger="alrun"):
        result = probe(built("no_dropout"), heuristic=heuristic, mc_samples=20)
    assert result.n_samples == 1 and not result.stochastic
    said = [r.getMessage() for r in caplog.records if "T = 1" in r.getMessage()]
    assert said == [f"`model._target_=m` has no active dropout (its MC samples do not vary), so heuristic={heuristic} "
                    "runs with T = 1 instead of mc_samples=20."]


def test_no_dropout_is_refused_for_bald(user_pkg):
    with pytest.raises(ModelError) as err:
        probe(built("no_dropout"))
    assert "it has no dropout layer; add an nn.Dropout module" in str(err.value) and one_sentence(str(err.value))


def test_unseeded_randomness_is_refused_for_bald_and_a_warning_for_entropy(user_pkg, caplog):
    with pytest.raises(ModelError) as err:
        probe(built("NumpyNoise"))
    message = str(err.value)
    assert "gives different MC-Dropout samples for the same generator" in message
    assert "randomness alrun does not seed" in message and one_sentence(message)
    with caplog.at_level(logging.WARNING, logger="alrun"):
        assert probe(built("NumpyNoise"), heuristic="entropy").n_samples == 5
    assert any("will not repeat run to run" in r.getMessage() for r in caplog.records)


def test_built_in_models_pass_the_probe():
    model = build_model(ModelSpec(name="mlp", hidden=16), (D,), C, seed=0)
    result = probe(model, name="`model.name=mlp`")
    assert result.reproducible and result.stochastic and result.n_samples == 5


def test_built_in_gal_cnn_passes_and_built_in_dropout_0_runs_entropy_at_t_1():
    cnn = build_model(ModelSpec(name="gal_cnn", hidden=16), (1, 8, 8), C, seed=0)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert check_mc(cnn, x, "bald", 5, seed=0, model_name="`model.name=gal_cnn`").n_samples == 5
    spec = run_spec_from_dict({"model": {"name": "mlp", "dropout": 0, "hidden": 16}, "heuristic": {"name": "entropy"}})
    mlp = build_model(spec.model, (D,), C, seed=0)
    assert probe_job_model(mlp, spec, (D,), torch.randn(8, D)) == 1


def test_the_probe_leaves_the_global_generator_as_it_was(user_pkg):
    model = built("AlwaysOnFunctional")
    seed_global(0, "x")
    expected = torch.rand(3)
    seed_global(0, "x")
    probe(model)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- whole jobs


def job(tmp_path, target: str, heuristic: str, name: str = "job"):
    spec = run_spec_from_dict({"model": {"name": "custom", "_target_": f"userprobe.nets.{target}"},
                               "heuristic": {"name": heuristic}, "max_labelled": 30, "query_size": 5,
                               "mc_samples": 4, "epochs": 2, "dataset": {"max_train": 200, "max_test": 100}})
    return ActiveLearningJob(spec, tmp_path / name)


def test_a_locked_dropout_job_repeats(user_pkg, tmp_path):
    first = job(tmp_path, "SequenceNet", "bald", "a").run()
    second = job(tmp_path, "SequenceNet", "bald", "b").run()
    columns = [c for c in first.columns if not c.startswith("time_")]
    pd.testing.assert_frame_equal(first[columns], second[columns])
    assert list(first["labelled"]) == [20, 25, 30]


def test_a_resumed_job_with_always_on_functional_dropout_equals_the_uninterrupted_one(user_pkg, tmp_path, caplog):
    whole = job(tmp_path, "AlwaysOnFunctional", "bald").run()
    folder = tmp_path / "job"
    for name in ("checkpoint.json", "steps.csv", "done"):  # back to the checkpoint after step 1
        (folder / name).unlink()
    torch.rand(5)  # whatever the process's global generator did meanwhile
    with caplog.at_level(logging.INFO, logger="alrun"):
        resumed = job(tmp_path, "AlwaysOnFunctional", "bald").run()
    assert any("after 2 finished steps" in r.getMessage() for r in caplog.records)
    columns = [c for c in whole.columns if not c.startswith("time_")]
    pd.testing.assert_frame_equal(resumed[columns], whole[columns])


def test_a_job_without_dropout_runs_entropy_and_random(user_pkg, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="alrun"):
        for heuristic in ("entropy", "random"):
            frame = job(tmp_path, "no_dropout", heuristic, heuristic).run()
            assert list(frame["labelled"]) == [20, 25, 30]
            assert set(frame["mc_samples_used"]) == {1}  # steps.csv says the T that ran, not the configured 4
    assert set(job(tmp_path, "SequenceNet", "bald", "mc").run()["mc_samples_used"]) == {4}
    assert sum("runs with T = 1 instead of mc_samples=4" in r.getMessage() for r in caplog.records) == 2


def test_the_cli_repeats_a_model_with_always_on_functional_dropout(package_dir, tmp_path):
    """Issue 21's case: nn.Dropout plus F.dropout(x, p, training=True) gave different steps.csv run to run."""
    args = ["scale=smoke", "max_labelled=30", "heuristic=bald", "seed=0", "model=custom",
            "model._target_=userprobe.nets.AlwaysOnFunctional"]
    runs = []
    for name in ("a", "b"):
        proc = run_alrun([*args, f"hydra.sweep.dir={tmp_path / name}"], tmp_path, env=user_env(package_dir))
        assert "calls functional dropout (`F.dropout(h, p=0.3, training=True)`)" in proc.stdout + proc.stderr
        (steps,) = (tmp_path / name).glob("*/steps.csv")
        runs.append(steps_without_timings(steps))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert len(runs[0]) == 2


def test_the_cli_refuses_bald_without_dropout_before_any_step(package_dir, tmp_path):
    proc = run_alrun(["scale=smoke", "max_labelled=30", "heuristic=bald", "seed=0", "model=custom",
                      "model._target_=userprobe.nets.no_dropout", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                     tmp_path, check=False, env=user_env(package_dir))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("alrun: error:")]
    assert len(lines) == 1 and "`model._target_=userprobe.nets.no_dropout` gives identical MC-Dropout samples" \
        in lines[0] and "it has no dropout layer" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not list((tmp_path / "sweep").glob("*/steps.csv"))
