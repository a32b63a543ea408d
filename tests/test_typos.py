"""A misspelt setting on the command line: one sentence naming the nearest real one, before any job starts."""

from __future__ import annotations

import pytest

from alrun.cli import config_dir
from alrun.config.keys import Settings
from alrun.config.schema import run_spec_from_dict
from alrun.core.errors import ConfigError
from tests.conftest import run_alrun

INTERNAL_NAMES = ("label_noise", "heuristic_params", "imbalance_classes", "To append", "+querysize")


@pytest.mark.parametrize("args,sentence", [
    (["querysize=20"], "unknown setting `querysize`: did you mean `query_size`?"),
    (["+querysize=20"], "unknown setting `querysize`: did you mean `query_size`?"),
    (["++querysize=20"], "unknown setting `querysize`: did you mean `query_size`?"),
    (["model.hed=fc"], "unknown setting `model.hed`: did you mean `model.head`?"),
    (["heuristik=bald,random"], "unknown setting `heuristik`: did you mean `heuristic`?"),
    (["lr=0.01"], "unknown setting `lr`: did you mean `train.lr`?"),
    (["scale=smok"], "unknown scale `smok`: did you mean `smoke`?"),
    (["heuristic=bald,entrpy"], "unknown heuristic `entrpy`: did you mean `entropy`?"),
], ids=lambda value: "typo" if isinstance(value, list) else "")
def test_typo_gets_one_sentence_with_the_nearest_setting(tmp_path, args, sentence):
    proc = run_alrun([*args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"alrun: error: {sentence}")
    assert not any(name in proc.stderr for name in INTERNAL_NAMES)
    assert not (tmp_path / "sweep").exists()  # stopped before Hydra made a job folder


def test_custom_model_extra_key_is_told_to_use_plusplus(tmp_path):
    proc = run_alrun(["model=custom", "model._target_=torch.nn.Identity", "model.width=3"], tmp_path, check=False)
    assert proc.returncode == 2 and "`++model.width=...`" in proc.stderr


@pytest.mark.parametrize("args", [
    ["grid.seeds=0", "tracker=mlflow", "tracker.uri=sqlite:///x.db", "report.sizes=[20,30]"],
    ["+experiment=noise", "dataset=imagefolder", "dataset.test_fraction=0.3", "hydra.job.chdir=false"],
    ["model=custom", "model._target_=torch.nn.Identity", "++model.width=3", "heuristic.name=bald"],
])
def test_real_settings_pass(tmp_path, args):
    proc = run_alrun([*args, "--cfg", "job"], tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr


def test_settings_read_from_the_config_files():
    settings = Settings([config_dir()])
    assert settings.knows("query_size") and settings.knows("train.lr") and settings.knows("heuristic.beta")
    assert settings.knows("grid.seeds") and settings.knows("lambda")  # set by a scale (`_global_`), the root
    assert not settings.knows("label_noise") and not settings.knows("querysize")
    assert settings.nearest("imbalance_kep") == "imbalance_keep"


def test_library_users_get_the_config_names_too():
    with pytest.raises(ConfigError, match=r"unknown setting `querysize`: did you mean `query_size`\?"):
        run_spec_from_dict({"querysize": 20})
    with pytest.raises(ConfigError) as info:
        run_spec_from_dict({"noise": 0.1})
    assert "lambda" in str(info.value) and not any(n in str(info.value) for n in INTERNAL_NAMES)


def test_options_of_a_users_search_path_are_known(tmp_path):
    from tests.conftest import REPO

    env = {"PYTHONPATH": f"{REPO / 'examples'}:{__import__('os').environ.get('PYTHONPATH', '')}"}
    ok = run_alrun(["hydra.searchpath=[pkg://mypkg.conf]", "dataset=mydigits", "--cfg", "job"], tmp_path, env=env)
    assert ok.returncode == 0
    typo = run_alrun(["hydra.searchpath=[pkg://mypkg.conf]", "dataset=mydigit"], tmp_path, check=False, env=env)
    assert "unknown dataset `mydigit`: did you mean `mydigits`?" in typo.stderr
