"""Embeddings in the loop: the last Linear layer's input from one pass with dropout off, the built-in selectors
(coreset, badge, typiclust, probcover) through the registry, custom heuristics that read embeddings by
parameter name, and the cold-start study."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from alrun.acquire import acquisition
from alrun.acquire.embeddings import embed, last_linear
from alrun.cli import config_dir
from alrun.config.schema import ModelSpec, run_spec_from_dict
from alrun.core.errors import ConfigError, ModelError
from alrun.model.builders import build_model
from tests.conftest import REPO, THREADS, run_alrun

SELECTORS = ("coreset", "badge", "typiclust", "probcover")


def hooked_input(model: nn.Module, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """What `layer` reads in an eval-mode forward of x, taken by a forward hook of the test's own."""
    seen = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    model.eval()
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0].flatten(1)


@pytest.mark.parametrize("name, shape", [("mlp", (12,)), ("gal_cnn", (1, 16, 16))])
def test_the_embedding_is_the_input_of_the_last_linear_layer(name, shape):
    model = build_model(ModelSpec(name=name, hidden=24), shape, 5, seed=0)
    x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(1))
    out = embed(model, x, batch_size=3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert last_linear(model) is linears[-1] and linears[-1].in_features == 24
    assert out.embeddings.shape == (7, 24) and out.probs.shape == (7, 5)
    torch.testing.assert_close(out.embeddings, hooked_input(model, linears[-1], x))
    with torch.no_grad():
        torch.testing.assert_close(out.probs, model.eval()(x).softmax(dim=1))


def test_the_embedding_is_deterministic_with_dropout_off_and_restores_the_modes():
    model = build_model(ModelSpec(name="mlp", hidden=16, dropout=0.9), (10,), 3, seed=0)
    model.train()
    x = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    first, second = embed(model, x, batch_size=7), embed(model, x, batch_size=7)
    assert torch.equal(first.embeddings, second.embeddings) and torch.equal(first.probs, second.probs)
    whole = embed(model, x, batch_size=512)  # batched or not, the same up to float summation order
    torch.testing.assert_close(whole.embeddings, first.embeddings)
    torch.testing.assert_close(whole.probs, first.probs)
    assert all(m.training for m in model.modules())  # the caller's mode is back
    # with dropout at 0.9 a train-mode pass would differ: the embedding is the eval-mode one
    with torch.no_grad():
        assert not torch.allclose(model.train()(x).softmax(dim=1), first.probs)


class TwoHeads(nn.Module):
    """A custom model: a trunk, a head with dropout and its own Linear, and a Linear after the head."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 9), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(9, 4), nn.ReLU(), nn.Linear(4, 3))
        self.after = nn.Linear(3, 3)

    def forward(self, x):
        return self.after(self.head(self.trunk(x)))


def test_a_custom_model_embeds_at_its_heads_last_linear_else_the_last_in_module_order():
    from alrun.model.custom import MC_HEAD

    model, x = TwoHeads(), torch.randn(5, 6)
    assert last_linear(model) is model.after  # no model.head: the last nn.Linear in module order
    setattr(model, MC_HEAD, "head")
    assert last_linear(model) is model.head[3]
    torch.testing.assert_close(embed(model, x).embeddings, hooked_input(model, model.head[3], x))


def test_a_model_without_a_linear_layer_is_one_sentence():
    with pytest.raises(ModelError, match="has no nn.Linear layer"):
        embed(nn.Sequential(nn.Flatten(), nn.Softmax(dim=1)), torch.randn(2, 3))
    with pytest.raises(ModelError, match=r"^heuristic=coreset reads the model's embeddings .* has no nn.Linear layer;"):
        last_linear(nn.Sequential(nn.Conv2d(1, 3, 1)), "coreset")


# ---------------------------------------------------------------- acquisition


def reader(probs, k, generator, embeddings, labelled_embeddings, labelled_targets):
    """A custom selector that reads every input: the k candidates farthest from the labelled set's mean."""
    RECEIVED.append({"embeddings": embeddings, "labelled_embeddings": labelled_embeddings,
                     "labelled_targets": labelled_targets})
    return (embeddings - labelled_embeddings.mean(dim=0)).norm(dim=1).argsort(descending=True)[:k]


RECEIVED: list[dict[str, torch.Tensor]] = []


def test_a_custom_selector_gets_the_embeddings_it_names():
    model = build_model(ModelSpec(name="mlp", hidden=8), (5,), 3, seed=0)
    x, x_lab, y_lab = torch.randn(30, 5), torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    params = {"_target_": "tests.test_embeddings.reader", "batch": True}
    assert acquisition.inputs_read("custom", params) == {"embeddings", "labelled_embeddings", "labelled_targets"}
    RECEIVED.clear()
    chosen = acquisition.acquire(model, x, "custom", 6, 4, mc_generator=torch.Generator().manual_seed(0),
                                 acquisition_generator=torch.Generator().manual_seed(1), heuristic_params=params,
                                 labelled=(x_lab, y_lab))
    [got] = RECEIVED
    torch.testing.assert_close(got["embeddings"], embed(model, x).embeddings)
    torch.testing.assert_close(got["labelled_embeddings"], embed(model, x_lab).embeddings)
    assert torch.equal(got["labelled_targets"], y_lab)
    expected = (got["embeddings"] - got["labelled_embeddings"].mean(dim=0)).norm(dim=1).argsort(descending=True)[:6]
    assert torch.equal(chosen.positions, expected)


def test_a_custom_scorer_that_names_no_embeddings_gets_none_computed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("embeddings computed for a heuristic that does not read them")

    monkeypatch.setattr(acquisition, "embed", refuse)
    params = {"_target_": "alrun.acquire.heuristics.entropy", "batch": False}
    assert acquisition.inputs_read("custom", params) == frozenset()
    model = build_model(ModelSpec(name="mlp", hidden=8), (5,), 3, seed=0)
    chosen = acquisition.acquire(model, torch.randn(12, 5), "custom", 3, 4,
                                 mc_generator=torch.Generator().manual_seed(0),
                                 acquisition_generator=torch.Generator().manual_seed(1), heuristic_params=params)
    assert chosen.positions.shape == (3,)


@pytest.mark.parametrize("name", SELECTORS)
def test_the_selectors_skip_mc_inference_and_read_the_labelled_set(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("MC inference ran for a selector")

    monkeypatch.setattr(acquisition, "mc_probs", refuse)
    monkeypatch.setattr(acquisition, "streamed_scores", refuse)
    model = build_model(ModelSpec(name="mlp", hidden=8), (5,), 3, seed=0)
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    labelled = (torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2]))

    def run():
        return acquisition.acquire(model, x, name, 5, 20, mc_generator=None,
                                   acquisition_generator=torch.Generator().manual_seed(3), labelled=labelled)

    first, second = run(), run()
    assert first.positions.shape == (5,) and first.positions.unique().numel() == 5
    assert int(first.positions.min()) >= 0 and int(first.positions.max()) < 40
    assert torch.equal(first.positions, second.positions)  # seeded by the acquisition generator
    reads = acquisition.inputs_read(name)
    assert "embeddings" in reads and ("labelled_embeddings" in reads) == (name != "badge")


@pytest.mark.parametrize("name", ["coreset", "typiclust", "probcover"])
def test_embedding_input_measures_the_selectors_distances_on_the_inputs_themselves(name):
    # the model's hidden layer is some random map; with embedding=input the picks are those of the
    # selector run directly on the inputs (flattened), the labelled inputs included
    from alrun.acquire import diversity

    model = build_model(ModelSpec(name="mlp", hidden=8), (2, 3), 3, seed=0)
    x = torch.randn(60, 2, 3, generator=torch.Generator().manual_seed(0))
    x_lab = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1))
    labelled = (x_lab, torch.tensor([0, 1, 2, 0, 1, 2]))
    extra = {"n_classes": 3} if name == "probcover" else {}
    picks = {}
    for source in ("input", "head"):
        picks[source] = acquisition.acquire(model, x, name, 5, 20, mc_generator=None,
                                            acquisition_generator=torch.Generator().manual_seed(3), labelled=labelled,
                                            heuristic_params={"embedding": source}).positions
    direct = getattr(diversity, name)(x.reshape(60, 6), 5, generator=torch.Generator().manual_seed(3),
                                      labelled_embeddings=x_lab.reshape(6, 6), **extra)
    assert torch.equal(picks["input"], direct)
    assert not torch.equal(picks["head"], direct)  # the default reads the hidden layer, which differs here


@pytest.mark.parametrize("name, key, value", [
    ("typiclust", "n_neighbours", 0), ("typiclust", "max_clusters", 1.5), ("probcover", "radius", 0),
    ("probcover", "purity", 0), ("probcover", "purity", 1.5), ("coreset", "max_memory_mb", -1),
    ("badge", "radius", 1.0), ("typiclust", "embedding", "pixels"),
])
def test_the_selectors_settings_are_validated(name, key, value):
    with pytest.raises(ConfigError, match=f"heuristic.{key}"):
        run_spec_from_dict({"heuristic": {"name": name, key: value}})


def test_the_selectors_config_files_hold_valid_settings():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in SELECTORS:
            spec = run_spec_from_dict(OmegaConf.to_container(compose("config", overrides=[f"heuristic={name}"]),
                                                             resolve=True))
            assert spec.heuristic == name
    assert run_spec_from_dict({"heuristic": {"name": "probcover", "radius": None, "purity": 1}}).heuristic_params[
        "radius"] is None


# ---------------------------------------------------------------- jobs


def test_each_built_in_selector_runs_in_a_smoke_job(tmp_path):
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "max_labelled=40", f"heuristic={','.join(SELECTORS)}", "seed=0",
               f"hydra.sweep.dir={sweep}"], tmp_path, env=THREADS)
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["heuristic"]) == set(SELECTORS)
    for name in SELECTORS:
        assert summary[summary.heuristic == name]["labelled"].tolist() == [20, 30, 40]
        meta = json.loads((sweep / f"heuristic={name},seed=0" / "job.json").read_text())
        assert meta["components"]["heuristic"]["target"] == f"alrun.acquire.diversity:{name}"


@pytest.mark.parametrize("name", ["coreset", "badge"])
def test_the_loop_gives_a_selector_the_labelled_sets_embeddings_it_reads(name, monkeypatch, tmp_path):
    from dataclasses import replace

    from alrun.config import components
    from alrun.loop.job import ActiveLearningJob
    from tests.faults import small_spec

    real = components.builder("heuristic", name)
    seen = []

    def spy(embeddings, k, **kwargs):
        seen.append((tuple(embeddings.shape), kwargs.get("labelled_embeddings"), k))
        return real(embeddings, k=k, **kwargs)

    spy.__signature__ = inspect.signature(real)  # alrun offers what the real one takes
    monkeypatch.setitem(components._RESOLVED, ("heuristic", name), spy)
    ActiveLearningJob(replace(small_spec(), heuristic=name), tmp_path / "job").run()
    assert [k for _, _, k in seen] == [10, 10]
    assert all(shape[1] == 128 for shape, _, _ in seen)  # the MLP head's hidden width
    if name == "coreset":
        assert [tuple(lab.shape) for _, lab, _ in seen] == [(20, 128), (30, 128)]
    else:  # BADGE reads no labelled set: none is computed
        assert all(lab is None for _, lab, _ in seen)


SELECTOR_PACKAGE = '''
import json, torch

def far(probs, k, generator, embeddings, labelled_embeddings, labelled_targets):
    """The k candidates farthest from the labelled set's mean embedding; logs what it was given."""
    with open("calls.jsonl", "a") as f:
        f.write(json.dumps({"n": len(probs), "shape": list(embeddings.shape),
                            "labelled": list(labelled_embeddings.shape), "targets": labelled_targets.tolist()}) + "\\n")
    assert embeddings.shape[0] == probs.shape[0] and labelled_embeddings.shape[1] == embeddings.shape[1]
    assert len(labelled_targets) == len(labelled_embeddings)
    return (embeddings - labelled_embeddings.mean(dim=0)).norm(dim=1).argsort(descending=True)[:k]
'''


def test_a_custom_selector_reading_embeddings_runs_in_a_smoke_job(tmp_path):
    (tmp_path / "embpkg").mkdir()
    (tmp_path / "embpkg" / "__init__.py").write_text("")
    (tmp_path / "embpkg" / "acq.py").write_text(SELECTOR_PACKAGE)
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "heuristic=custom", "heuristic._target_=embpkg.acq.far", "heuristic.batch=true",
               "seed=0", "model.hidden=24", f"hydra.sweep.dir={sweep}"], tmp_path,
              env={**THREADS, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    # alrun's check before training (random inputs: D = 16, L = 8), then one call per acquisition step
    assert calls[0]["shape"] == [calls[0]["n"], 16] and calls[0]["labelled"] == [8, 16]
    assert [c["labelled"] for c in calls[1:]] == [[20, 24], [30, 24], [40, 24]]
    assert all(c["shape"][1] == 24 for c in calls[1:])
    # the labelled targets are the oracle's labels of the labelled set, in labelling order
    job = sweep / next(p.name for p in sweep.iterdir() if p.is_dir() and (p / "checkpoint.json").exists())
    from alrun.loop.checkpoint import load_checkpoint

    labelled = load_checkpoint(job / "checkpoint.json")["labelled"]
    from alrun.config.schema import DatasetSpec
    from alrun.data import load_dataset
    y = load_dataset(DatasetSpec(name="digits", max_train=300, max_test=150)).y_train
    assert calls[-1]["targets"] == [int(y[i]) for i in labelled[:40]]


# ---------------------------------------------------------------- the studies


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        params = compose("config", overrides=list(overrides), return_hydra_config=True).hydra.sweeper.params
        cfg = compose("config", overrides=list(overrides))
    return run_spec_from_dict(OmegaConf.to_container(cfg, resolve=True)), dict(params), cfg


@pytest.mark.parametrize("extra", [["scale=laptop"], ["scale=cpu", "dataset=cifar10", "dataset.root=unused"]])
def test_the_cold_start_study_composes_one_label_per_class_to_twenty(extra):
    spec, params, cfg = composed("+experiment=cold_start", *extra)
    assert (spec.initial_labelled, spec.initial_balanced, spec.query_size, spec.max_labelled) == (10, True, 10, 200)
    assert spec.train.n_validation == 0  # no labels spent beyond the budget
    assert params["heuristic"] == "typiclust,probcover,coreset,badge,bald,entropy,random"
    assert len(str(OmegaConf.select(cfg, "grid.cold_start_seeds")).split(",")) == 10
    assert list(cfg.report.sizes) == [10, 20, 50, 100, 200]
    assert all((s - spec.initial_labelled) % spec.query_size == 0 for s in cfg.report.sizes)
    if "scale=cpu" in extra:
        assert spec.model.backbone == "efficientnet_lite0" and spec.dataset.name == "cifar10"
    else:
        assert spec.dataset.name == "digits"


@pytest.mark.parametrize("scale", ["smoke", "laptop", "cpu", "paper", "cpu_paper_sizes"])
def test_the_query_size_study_compares_badge(scale):
    _, params, _ = composed("+experiment=query_size", f"scale={scale}")
    assert "badge" in str(params["heuristic"]).split(",")


def test_the_cold_start_study_runs_at_smoke_scale_and_ends_with_a_verdict(tmp_path):
    sweep = tmp_path / "cold"
    proc = run_alrun(["+experiment=cold_start", "scale=smoke", f"hydra.sweep.dir={sweep}"], tmp_path, env=THREADS)
    summary = pd.read_csv(sweep / "summary.csv")
    heuristics = {"typiclust", "probcover", "coreset", "badge", "bald", "entropy", "random"}
    assert set(summary["heuristic"]) == heuristics and set(summary["seed"]) == {0, 1}
    assert sorted(set(summary["labelled"])) == [10, 20, 30]
    first = summary[summary.labelled == 10]
    counts = first[[c for c in summary.columns if c.startswith("count_")]]
    assert (counts == 1).all().all()  # one label per class to start
    verdict = proc.stdout[proc.stdout.index("Verdict"):]
    assert all(f"- {h}:" in verdict for h in heuristics - {"random"})


# ---------------------------------------------------------------- the documentation (docs/reference/heuristics.md)


def test_the_documented_embedding_heuristic_commands_run_as_written(tmp_path):
    from tests.test_sweep_components import doc_block

    lines = doc_block("reference/heuristics.md", "Heuristics that read embeddings")
    assert any("--config-dir examples/mypkg/conf" in line and "heuristic=mycoreset,coreset,random" in line
               for line in lines)
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    shims = tmp_path / "bin"  # `alrun` as installed: this interpreter, alrun from this checkout
    shims.mkdir()
    (shims / "alrun").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m alrun "$@"\n')
    (shims / "alrun").chmod(0o755)
    env = {**os.environ, **THREADS, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "ALRUN_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [table] = (tmp_path / "results").glob("*/*/summary.csv")
    assert set(pd.read_csv(table)["heuristic"]) == {"mycoreset", "coreset", "random"}


def test_jobs_from_before_the_embedding_setting_resume_at_its_default():
    from dataclasses import replace

    from alrun.loop.job import spec_fingerprint

    spec = run_spec_from_dict({"heuristic": {"name": "coreset", "max_memory_mb": 512}})
    older = replace(spec, heuristic_params={k: v for k, v in spec.heuristic_params.items() if k != "embedding"})
    assert spec.heuristic_params.get("embedding", "head") == "head"
    assert spec_fingerprint(older) == spec_fingerprint(replace(spec, heuristic_params={**older.heuristic_params,
                                                                                       "embedding": "head"}))
    assert spec_fingerprint(older) != spec_fingerprint(replace(spec, heuristic_params={**older.heuristic_params,
                                                                                       "embedding": "input"}))
