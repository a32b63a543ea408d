"""`alrun ... until=decided max_seeds=30 seeds_per_round=2`: the sweep's seeds in rounds, the verdict read after each.

Round r runs the user's own command as a process of its own (`python -m alrun ...`) with the seeds of rounds 1 to r,
into one fixed folder: the jobs of earlier rounds are finished and skipped (alrun's resume), so every launcher works
unchanged and the same command resumes. After each round the written report's primary comparisons are read
(table.csv); it stops when none is undecided ("equivalent" is an answer) or at max_seeds. The verdict's confidence
sequences are anytime-valid (alrun.report.decision), so reading it after every round keeps its error rates.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alrun.core.files import atomic_write_text
from alrun.report.write import UNTIL_FILE

KEYS = ("until", "max_seeds", "seeds_per_round")
MAX_SEEDS_DEFAULT = 30
PER_ROUND_DEFAULT = 2
EXIT_INTERRUPTED = 130


class UntilError(ValueError):
    """A bad until=/max_seeds=/seeds_per_round= value: its one sentence."""


@dataclass(frozen=True)
class Plan:
    """What until=decided runs: the first round's seeds, then `per_round` more each round, up to `max_seeds`."""

    max_seeds: int
    per_round: int
    first: tuple[int, ...]

    def rounds(self) -> list[tuple[int, ...]]:
        """The seeds each round runs (all of them so far: the earlier ones are skipped as finished)."""
        seeds, out = list(self.first[: self.max_seeds]), []
        out.append(tuple(seeds))
        candidate = 0
        while len(seeds) < self.max_seeds:
            for _ in range(min(self.per_round, self.max_seeds - len(seeds))):
                while candidate in seeds:
                    candidate += 1
                seeds.append(candidate)
            out.append(tuple(seeds))
        return out


def _key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UntilError(f"{key}={value} is not a whole number.") from None


def seed_values(arg: str) -> tuple[int, ...]:
    """The seeds a `seed=...` override gives (`seed=3`, `seed=0,1,2`, `seed=range(0,4)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(arg)
        values = ([str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override()
                  else [override.get_value_element_as_str()])
        return tuple(dict.fromkeys(int(v) for v in values))
    except Exception:  # noqa: BLE001 - any value that is not a list of whole numbers
        raise UntilError(f"until=decided needs whole-number seeds, not `{arg}`.") from None


def split(argv: list[str]) -> tuple[Plan | None, list[str]]:
    """(the plan, argv without until=, max_seeds=, seeds_per_round= and the seed override); (None, argv) when
    argv has no until=. Raises UntilError with one sentence for a bad value or max_seeds= without until=."""
    given = {_key(a): a.split("=", 1)[1] for a in argv if "=" in a and not a.startswith("-") and _key(a) in KEYS}
    if not given:
        return None, argv
    if "until" not in given:
        raise UntilError(f"{' and '.join(f'{k}=' for k in given)} go with until=decided (e.g. `alrun until=decided "
                         "max_seeds=30 seeds_per_round=2`).")
    if given["until"] != "decided":
        raise UntilError(f"until={given['until']} is not known: the one value is until=decided.")
    max_seeds = _int("max_seeds", given.get("max_seeds", str(MAX_SEEDS_DEFAULT)))
    if max_seeds < 3:
        raise UntilError(f"max_seeds={max_seeds} is too few: a paired comparison needs at least 3 seeds.")
    width = next((a.split("=", 1)[1] for a in argv if _key(a) == "hydra.launcher.n_jobs"), None)
    per_round = _int("seeds_per_round", given.get("seeds_per_round", width or str(PER_ROUND_DEFAULT)))
    if per_round < 1:
        raise UntilError(f"seeds_per_round={per_round} must be at least 1.")
    rest = [a for a in argv if not ("=" in a and not a.startswith("-") and _key(a) in KEYS)]
    seeds = [a for a in rest if "=" in a and not a.startswith("-") and _key(a) == "seed"]
    first = seed_values(seeds[-1]) if seeds else tuple(range(max(per_round, 2)))
    rest = [a for a in rest if a not in seeds]
    return Plan(max_seeds, per_round, first), rest


def seed_override(seeds: tuple[int, ...]) -> str:
    """`seed=range(0,N)` for 0..N-1, else the list."""
    if list(seeds) == list(range(len(seeds))):
        return f"seed=range(0,{len(seeds)})"
    return "seed=" + ",".join(str(s) for s in seeds)


def compose_overrides(argv: list[str]) -> list[str]:
    """argv's overrides for Hydra's compose API, the user's `--config-dir` folders added to hydra.searchpath
    (compose takes no --config-dir, and an experiment of the user's folder may name the study)."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    folders = [argv[i + 1] for i, a in enumerate(argv) if a in ("--config-dir", "-cd") and i + 1 < len(argv)]
    folders += [a.split("=", 1)[1] for a in argv if a.startswith("--config-dir=")]
    if not folders:
        return overrides
    entries = [f"file://{Path(folder).resolve()}" for folder in folders]
    given = [o for o in overrides if _key(o) == "hydra.searchpath"]
    if given:
        overrides.remove(given[-1])
        entries = [e for e in given[-1].split("=", 1)[1].strip("[]").split(",") if e.strip()] + entries
    return [*overrides, f"hydra.searchpath=[{','.join(entries)}]"]


def sweep_folder(argv: list[str], configs: str) -> tuple[str, bool]:
    """(the sweep folder, whether argv named it): the `hydra.sweep.dir` given, else the one Hydra would choose
    (results/<study>/<time>), fixed now so every round and a re-run write into it."""
    named = [a.split("=", 1)[1] for a in argv if _key(a) == "hydra.sweep.dir"]
    if named:
        return named[-1], True
    try:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=configs, version_base="1.3"):
            cfg = compose("config", overrides=compose_overrides(argv), return_hydra_config=True)
            return str(cfg.hydra.sweep.dir), False
    except Exception:  # noqa: BLE001 - a command Hydra refuses is refused again, in round 1, by Hydra itself
        import time

        study = next((a.split("=", 1)[1] for a in argv if _key(a) == "study"), "baseline")
        return f"results/{study}/{time.strftime('%Y-%m-%d_%H-%M-%S')}", False


def read_decided(folder: Path) -> tuple[int, int]:
    """(primary comparisons decided, primary comparisons) in the folder's table.csv, as its report wrote it."""
    import pandas as pd

    from alrun.report.decision import UNDECIDED

    path = Path(folder) / "table.csv"
    if not path.is_file():
        return 0, 0
    table = pd.read_csv(path)
    if not {"metric", "role", "decision"} <= set(table.columns):
        return 0, 0
    primary = table[table["metric"].astype(str).str.startswith("verdict_") & (table["role"] == "primary")]
    return int((primary["decision"].fillna(UNDECIDED) != UNDECIDED).sum()), len(primary)


def _run(command: list[str]) -> int:
    """Run one round; a Ctrl-C reaches the round's process too (it writes its report and exits 130): wait for it."""
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends this at once
        proc.wait()
        return EXIT_INTERRUPTED


def run_rounds(plan: Plan, argv: list[str], folder: str, run: Callable[[list[str]], int] = _run,
               read: Callable[[Path], tuple[int, int]] = read_decided, say: Callable[[str], None] = print) -> int:
    """Run the rounds of `plan` into `folder`; the exit code (0 decided or at max_seeds, 1 some job failed, 2 a
    round stopped with an error, 130 interrupted)."""
    code, decided, total, seeds = 0, 0, 0, ()
    rounds = plan.rounds()
    for r, seeds in enumerate(rounds, 1):
        Path(folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(folder) / UNTIL_FILE, json.dumps(
            {"round": r, "seeds": len(seeds), "max_seeds": plan.max_seeds, "seeds_per_round": plan.per_round}))
        rc = run([sys.executable, "-m", "alrun", *argv, seed_override(seeds), f"hydra.sweep.dir={folder}"])
        if rc == EXIT_INTERRUPTED:
            say(f"alrun: until=decided interrupted in round {r}; the same command resumes it")
            return EXIT_INTERRUPTED
        if rc not in (0, 1):
            return rc
        code = max(code, rc)
        decided, total = read(Path(folder))
        say(f"round {r}: {len(seeds)} seeds, {decided} of {total} comparisons decided")
        if total and decided == total:
            say(f"until=decided: every primary comparison decided after {r} round{'s' * (r != 1)} "
                f"({len(seeds)} seeds), in {folder}")
            return code
    say(f"until=decided: stopped at max_seeds={plan.max_seeds} after {len(rounds)} round{'s' * (len(rounds) != 1)} "
        f"with {total - decided} of {total} comparisons undecided, in {folder}")
    return code


def main(argv: list[str], configs: str) -> int | None:
    """The entry point's part: None when argv has no until= (a plain sweep), else the exit code of the rounds
    (`configs`: alrun's config folder, where Hydra's choice of folder is read)."""
    try:
        plan, rest = split(argv)
    except UntilError as exc:
        print(f"alrun: error: {exc}", file=sys.stderr)
        return 2
    if plan is None:
        return None
    folder, named = sweep_folder(rest, configs)
    rest = [a for a in rest if _key(a) != "hydra.sweep.dir"]
    if not named:
        print(f"alrun: until=decided writes into {folder}; add hydra.sweep.dir={folder} to re-run it", flush=True)
    return run_rounds(plan, rest, folder)
