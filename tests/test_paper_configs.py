"""The paper's setup as each study composes it (`scale=paper`, the experiments' default): no data needed."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alrun.cli import config_dir
from alrun.config.schema import run_spec_from_dict

STUDIES = {  # study -> (data set, the swept keys besides seed)
    "baseline": ("cifar10", {"heuristic"}),
    "noise": ("cifar10", {"lambda", "heuristic"}),
    "convergence": ("cifar10", {"epochs", "heuristic"}),
    "query_size": ("cifar10", {"query_size", "heuristic"}),
    "pool_size": ("cifar10", {"pool_fraction", "heuristic"}),
    "imbalance": ("cifar100", {"delta", "heuristic"}),
    "miotcd": ("miotcd", {"heuristic"}),
}


def composed(study: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        params = compose("config", overrides=[f"+experiment={study}"], return_hydra_config=True).hydra.sweeper.params
        cfg = compose("config", overrides=[f"+experiment={study}"])
    return run_spec_from_dict(OmegaConf.to_container(cfg, resolve=True)), dict(params), cfg


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_each_study_composes_the_papers_setup(study):
    spec, params, cfg = composed(study)
    dataset, swept = STUDIES[study]
    assert spec.dataset.name == dataset
    # the whole pretrained VGG-16 trains at every step (no frozen backbone)
    assert spec.model.name == "vgg16" and spec.model.pretrained and spec.model.backbone is None
    assert (spec.initial_labelled, spec.query_size, spec.max_labelled, spec.mc_samples) == (500, 100, 20000, 20)
    assert set(params) == swept | {"seed"}
    assert str(OmegaConf.select(cfg, "grid.seeds")) == "0,1,2,3,4"
    assert list(cfg.report.sizes) == [5000, 10000, 20000]
    assert spec.dataset.max_test == 10000
    assert spec.train.schedule == "fixed" and spec.train.n_validation == 0  # the paper's fixed epochs
    if study == "imbalance":  # the paper's Table 3 grid
        assert str(params["delta"]) == "10,25,50"


def test_miotcd_keeps_a_pool_of_20000_and_a_bounded_test_set():
    spec, _, _ = composed("miotcd")
    assert spec.dataset.max_train == 20000 and spec.dataset.max_test == 10000
    assert spec.dataset.test_fraction == 0.25


@pytest.mark.parametrize("scale, pool_cap, sizes", [
    ("cpu", 10000, [1000, 2000, 3000]),
    ("cpu_paper_sizes", None, [5000, 10000, 20000]),
])
def test_cpu_scales_use_the_frozen_offline_backbone(scale, pool_cap, sizes):
    """Both CPU scales train only a head on cached EfficientNet-Lite0 features; the second to the paper's sizes."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=noise", f"scale={scale}", "dataset=imagefolder",
                                           "dataset.root=unused"])
    spec = run_spec_from_dict(OmegaConf.to_container(cfg, resolve=True))
    assert spec.model.backbone == "efficientnet_lite0" and not spec.model.finetune
    assert spec.dataset.max_train == pool_cap
    assert list(cfg.report.sizes) == sizes and spec.max_labelled == sizes[-1]
    # every labelled size the table reads is reached exactly by the steps
    assert all((size - spec.initial_labelled) % spec.query_size == 0 for size in sizes)


def test_bare_alrun_fits_by_early_stopping_and_studies_keep_fixed_epochs():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        bare = run_spec_from_dict(OmegaConf.to_container(compose("config"), resolve=True))
        convergence = compose("config", overrides=["+experiment=convergence", "scale=laptop"])
        convergence = run_spec_from_dict(OmegaConf.to_container(convergence, resolve=True))
    assert bare.train.schedule == "early_stopping" and bare.train.n_validation == 50 and bare.train.epochs == 100
    assert not bare.initial_balanced
    # the convergence study varies the epochs, so even at the laptop scale it trains them all and holds nothing out
    assert convergence.train.schedule == "fixed" and convergence.train.n_validation == 0


def test_mnist_batchbald_composes_the_batchbald_codes_protocol():
    """The settings the BatchBALD code's MNIST runs record, in alrun's terms (experiment/mnist_batchbald.yaml)."""
    spec, params, cfg = composed("mnist_batchbald")
    assert (spec.dataset.name, spec.model.name) == ("mnist", "gal_cnn")
    assert (spec.initial_labelled, spec.initial_balanced, spec.query_size, spec.max_labelled) == (20, True, 10, 300)
    assert spec.mc_samples == 100 and spec.pool_fraction == 1.0 and spec.train.epochs == 30
    train = spec.train
    assert (train.schedule, train.validation_size, train.patience, train.stop_on) == ("early_stopping", 1024, 3,
                                                                                      "accuracy")
    assert (train.epoch_samples, train.batch_size, train.optimizer, train.lr, train.min_updates) == (
        5056, 64, "adam", 0.001, 0)
    assert set(params) == {"heuristic", "seed"} and str(params["heuristic"]) == "bald,batchbald,random"
    assert list(cfg.report.target_accuracy) == [0.9, 0.95]
