"""The README and the documentation site (docs/, mkdocs.yml): every `alrun ...` command they show composes into a
config alrun accepts, so no documented command goes stale; the README fits on two screens; the reference pages
name every setting, heuristic and committed study; and the site builds strictly.

Commands are read from the ```bash / ```console blocks and the inline code spans (`alrun ...`) of README.md and
docs/**/*.md. Each is composed in-process with Hydra's compose API (what `alrun OVERRIDES --cfg job` prints,
without a process per command) after alrun's own rewriting of the command line, then validated as alrun validates
a job (`run_spec_from_dict`). A sweep (`heuristic=a,b,c`) is composed once per value of its longest list.
A command shown as a placeholder, not to be run as written, carries the marker `(placeholder)` in its shell
comment; it is listed, and skipped, by `test_placeholders_are_few_and_marked`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
PLACEHOLDER = "(placeholder)"  # in a command's shell comment: shown, not composed
README_MAX_LINES = 150

FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
INLINE = re.compile(r"(?<!`)`((?:[A-Z_][A-Z0-9_]*=\S+\s+)*alrun\s[^`]+)`(?!`)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|"}
# launchers that need a plugin of the `cluster` extra (hydra/launcher=slurm is alrun's, on submitit's)
LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
                    "slurm": "hydra_plugins.hydra_submitit_launcher"}


@dataclass(frozen=True)
class Command:
    page: str  # relative to the repository
    line: int
    text: str  # as written, continuations joined

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _alrun_segments(text: str) -> list[list[str]]:
    """The `alrun` invocations of a shell line: its words after `alrun`, env assignments and `&&` chains aside."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return []
    segments, current = [], []
    for word in [*words, "&&"]:
        if word in SEPARATORS:
            while current and ENV_ASSIGNMENT.match(current[0]):
                current.pop(0)
            if current[:1] == ["alrun"]:
                segments.append(current[1:])
            current = []
        else:
            current.append(word)
    return segments


def documented_commands(path: Path) -> list[Command]:
    """Every `alrun` command line of a Markdown page: in shell code blocks and in inline code spans (which may
    wrap across lines of a paragraph)."""
    page = str(path.relative_to(REPO))
    found: list[Command] = []
    lines = path.read_text().splitlines()
    prose = list(lines)  # the page with its code blocks blanked, for the inline spans
    fence: str | None = None  # the language of the open code block
    pending, start = "", 0
    for number, line in enumerate(lines, 1):
        opened = FENCE.match(line)
        if opened or fence is not None:
            prose[number - 1] = ""
        if opened:
            fence = None if fence is not None else opened.group(2)
            continue
        if fence is None or fence not in ("bash", "console", "sh", "shell"):
            continue
        text = line.strip().removeprefix("$ ")
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        if re.search(r"(^|[\s;&|])alrun(\s|$)", text.split("#")[0]):
            found.append(Command(page, start, text))
    text = "\n".join(prose)
    for match in INLINE.finditer(text):
        found.append(Command(page, text.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())))
    return sorted(found, key=lambda c: c.line)


COMMANDS = [c for path in PAGES for c in documented_commands(path)]


@cache
def _compose(config_dirs: tuple[str, ...], overrides: tuple[str, ...]) -> str | None:
    """None when the overrides compose into a config alrun accepts, else why not."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alrun.cli import config_dir
    from alrun.config import run_spec_from_dict

    extra = [f"hydra.searchpath=[{','.join(f'file://{d}' for d in config_dirs)}]"] if config_dirs else []
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=[*extra, *overrides], return_hydra_config=True)
        plain = OmegaConf.to_container(cfg, resolve=False)
        plain.pop("hydra")
        run_spec_from_dict(OmegaConf.to_container(OmegaConf.create(plain), resolve=True))
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong with which command
        return f"{type(exc).__name__}: {exc}"
    return None


def _expanded(overrides: list[str]) -> list[list[str]]:
    """The overrides of each composition a sweep needs: the i-th value of every swept key, for i up to the
    longest list (`heuristic=a,b,c seed=0,1` -> [a, 0], [b, 1], [c, 0])."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = [parser.parse_override(o) for o in overrides]
    values: list[list[str]] = []
    for raw, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            key = raw.split("=", 1)[0]
            values.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            values.append([raw])
    longest = max((len(v) for v in values), default=1)
    return [[v[i % len(v)] for v in values] for i in range(longest)]


def check(command: Command) -> str | None:
    """None when the command composes (or only asks for help), else one sentence saying why not."""
    from alrun.cli import as_multirun, settings_of_swept_groups, target_spelling_error

    [words, *more] = _alrun_segments(command.text) or [None]
    assert words is not None, f"{command.where}: no alrun command read from {command.text!r}"
    assert not more, f"{command.where}: one alrun command a line, please: {command.text!r}"
    if any(w in ("--help", "-h", "--hydra-help", "--info") for w in words):
        return None
    config_dirs, overrides, rest = [], [], list(words)
    while rest:
        word = rest.pop(0)
        if word in ("-m", "--multirun"):
            continue
        if word in ("--config-dir", "-cd"):
            config_dirs.append(str((REPO / rest.pop(0)).resolve()))
        elif word in ("--cfg", "-c"):
            rest.pop(0)
        elif word.startswith("-"):
            return f"a flag the test does not know: {word}"
        else:
            overrides.append(word)
    # alrun's own rewriting of the command line (the --multirun it adds aside)
    argv = [w for w in settings_of_swept_groups(as_multirun(overrides)) if w != "--multirun"]
    message = target_spelling_error(argv)
    if message:
        return message
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "hydra/launcher" and value in LAUNCHER_PLUGINS:
            pytest.importorskip(LAUNCHER_PLUGINS[value], reason=f"hydra/launcher={value} needs the `cluster` extra")
    for one in _expanded(argv):
        error = _compose(tuple(config_dirs), tuple(one))
        if error:
            return f"{' '.join(one)}: {error}"
    return None


@pytest.fixture(autouse=True, scope="module")
def _examples_importable():
    """examples/mypkg on the path, as the docs tell a reader to put it (`pkg://mypkg.conf`)."""
    sys.path.insert(0, str(REPO / "examples"))
    yield
    sys.path.remove(str(REPO / "examples"))


def test_the_docs_show_commands_from_every_part():
    pages = {c.page for c in COMMANDS}
    assert "README.md" in pages
    for part in ("getting-started.md", "how-to/sweeps.md", "how-to/own-data.md", "how-to/own-model.md",
                 "how-to/own-heuristic.md", "how-to/clusters.md", "how-to/tracking.md", "studies/index.md"):
        assert f"docs/{part}" in pages, part
    assert len(COMMANDS) > 40


# Hydra warns that a namespace package's configs (examples/mypkg/conf has no __init__.py) are "not available",
# then finds them
@pytest.mark.filterwarnings("ignore:provider=hydra.searchpath in command-line")
@pytest.mark.parametrize("command", [c for c in COMMANDS if PLACEHOLDER not in c.text],
                         ids=lambda c: c.where)
def test_every_documented_alrun_command_composes(command):
    error = check(command)
    assert error is None, f"{command.where}: `{command.text}` does not compose: {error}"


def test_placeholders_are_few_and_marked():
    """A placeholder says so in its own line; none may hide among the checked commands."""
    placeholders = [c for c in COMMANDS if PLACEHOLDER in c.text]
    assert len(placeholders) <= 5, [c.where for c in placeholders]
    for c in placeholders:
        assert "#" in c.text and PLACEHOLDER in c.text.split("#", 1)[1], c.where


def test_a_stale_command_is_caught():
    """The check itself: a misspelt key, a missing option and a bad value each fail it."""
    for text in ("alrun querysize=20", "alrun heuristic=baldd", "alrun query_size=0",
                 "alrun heuristic=custom,bald heuristic._target_=mypkg.acq.score"):
        assert check(Command("test", 0, text)) is not None, text
    assert check(Command("test", 0, "alrun heuristic=bald,margin 'seed=range(0,3)' scale=smoke")) is None


def python_examples() -> list[tuple[str, str]]:
    """(page:line, code) of every ```python block of the docs that imports alrun."""
    found = []
    for path in PAGES:
        text = path.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            if re.search(r"^(from|import) alrun", match.group(1), re.M):
                found.append((f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), python_examples(), ids=[w for w, _ in python_examples()])
def test_every_documented_python_example_runs(where, code, capsys):
    exec(compile(code, where, "exec"), {"__name__": "docs_example"})  # noqa: S102 - the docs' own examples


def test_the_api_page_names_importable_objects():
    """Each `::: dotted.path` of the API page imports (the package paths, not the aliases of alrun 0.1)."""
    import importlib

    paths = re.findall(r"^::: ([\w.]+)$", (DOCS / "reference" / "api.md").read_text(), re.M)
    assert len(paths) >= 10
    for path in paths:
        module, _, name = path.rpartition(".")
        try:
            importlib.import_module(path)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), name), path
        assert not any(part in path for part in ("alrun.heuristics", "alrun.batch", "alrun.stats")), path


def test_the_modules_and_files_the_docs_name_exist():
    """A module path (`alrun.model.inference.mc_probs`) or a file of the repository (`alrun/acquire/batch.py`,
    `tests/test_slurm.py`) named in the docs is there: a move of the code shows here, not in a reader's shell."""
    import importlib

    def resolves(dotted: str) -> bool:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for name in parts[cut:]:
                if not hasattr(obj, name):
                    return False
                obj = getattr(obj, name)
            return True
        return False

    text = "\n".join(path.read_text() for path in PAGES)
    dotted = set(re.findall(r"\balrun(?:\.[A-Za-z_]\w*)+", text))
    files = set(re.findall(r"\b(?:alrun|hydra_plugins|tests|benchmarks|configs|examples|\.ci)/[\w./-]*\w", text))
    assert len(dotted) >= 10 and len(files) >= 20
    assert [d for d in sorted(dotted) if not resolves(d)] == []
    assert [f for f in sorted(files) if not (REPO / f).exists()] == []


def test_the_readme_fits_on_two_screens_and_links_into_the_site():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    for line in ('pip install -e ".[dev]" && alrun', "python -m pytest"):
        assert line in readme
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(set(links)) >= 10
    for link in links:
        assert (REPO / link).is_file(), link


def _flat_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if key in ("defaults", "hydra"):
            continue
        keys.extend(_flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return keys


def test_the_settings_page_names_every_setting_of_the_config():
    page = (DOCS / "reference" / "settings.md").read_text()
    keys = _flat_keys(yaml.safe_load((REPO / "configs" / "config.yaml").read_text()))
    assert "query_size" in keys and "train.lr" in keys
    assert [k for k in keys if f"`{k}`" not in page] == []
    for group in ("dataset", "model", "heuristic", "scale", "experiment", "tracker"):
        for option in (REPO / "configs" / group).glob("*.yaml"):  # each included as committed
            assert f'--8<-- "configs/{group}/{option.name}"' in page, option


def test_the_heuristics_page_names_every_heuristic_with_its_source():
    page = (DOCS / "reference" / "heuristics.md").read_text()
    table = page.split("| `heuristic=` | what it scores or selects | source |", 1)[1].split("\n\n", 1)[0]
    for option in (REPO / "configs" / "heuristic").glob("*.yaml"):
        [row] = [r for r in table.splitlines() if r.startswith("|") and re.search(rf"`{option.stem}`", r.split("|")[1])]
        assert row.rstrip(" |").split("|")[-1].strip(), f"{option.stem} has no source"


def test_every_committed_study_has_its_page_quoting_its_table():
    folders = sorted(p.parent.name for p in (REPO / "results" / "reference").glob("*/table.md"))
    assert folders
    nav = (REPO / "mkdocs.yml").read_text()
    for name in folders:
        page = DOCS / "studies" / "reference" / f"{name}.md"
        assert f'--8<-- "results/reference/{name}/table.md"' in page.read_text(), name
        assert f"studies/reference/{name}.md" in nav, name
        assert f"(reference/{name}.md)" in (DOCS / "studies" / "index.md").read_text(), name
    assert '--8<-- "results/README.md"' in (DOCS / "studies" / "results.md").read_text()


def test_no_machine_path_in_the_docs():
    """Placeholders (DATA/cifar10-jpg, PATH) instead of a folder of the machine the docs were written on; the
    system paths alrun and Ray use on every machine (/tmp/alrun-gpu-locks, /tmp/ray) are facts, not such folders."""
    machine = re.compile(r"(?<![\w.~$])/(work|home|Users|root|mnt|scratch)/|[A-Za-z]:\\\\")
    for path in [*PAGES, REPO / "mkdocs.yml"]:
        text = path.read_text()
        assert str(REPO) not in text and not machine.search(text), path


def _mkdocs(root: Path, site: Path) -> subprocess.CompletedProcess:
    for module in ("mkdocs", "material", "mkdocstrings"):
        pytest.importorskip(module, reason="the `docs` extra is not installed (pip install -e '.[docs]')")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`, as .ci/run runs it."""
    proc = _mkdocs(REPO, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "studies" / "reference" / "noise_cpu-curves.png").is_file()
    assert "Table 1" in (tmp_path / "site" / "studies" / "results" / "index.html").read_text()


@pytest.mark.parametrize("damage", ["a broken link", "a page left out of the nav", "a missing include"])
def test_the_strict_build_fails_on(damage, tmp_path):
    """What .ci/run's build catches, on a copy of the site's sources with one fault."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(DOCS, root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    for shared in ("results", "configs", "alrun", "hydra_plugins"):
        (root / shared).symlink_to(REPO / shared)
    index = root / "docs" / "index.md"
    if damage == "a broken link":
        index.write_text(index.read_text() + "\n[gone](how-to/no-such-page.md)\n")
    elif damage == "a page left out of the nav":
        (root / "docs" / "how-to" / "orphan.md").write_text("# Orphan\n")
    else:
        index.write_text(index.read_text() + '\n--8<-- "results/no-such-table.md"\n')
    proc = _mkdocs(root, tmp_path / "site")
    assert proc.returncode != 0
    said = {"a broken link": "no-such-page.md", "a page left out of the nav": "orphan.md",
            "a missing include": "no-such-table.md"}[damage]
    assert said in proc.stderr + proc.stdout
