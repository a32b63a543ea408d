"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s smoke`, `nox -s bench [-- --quick]`,
`nox -s gpu_check [-- --quick]`, `nox -s docs`."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (the same command .ci/run runs)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *(session.posargs or ["-n", "auto", "--dist", "loadfile"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the package, tests, benchmarks and this file."""
    session.install("ruff")
    session.run("ruff", "check", "alrun", "hydra_plugins", "tests", "benchmarks", "noxfile.py")


@nox.session
def smoke(session: nox.Session) -> None:
    """The default study at scale=smoke: seconds, end to end through the CLI."""
    session.install("-e", ".")
    session.run("alrun", "scale=smoke", f"hydra.sweep.dir={session.create_tmp()}/smoke", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Speed against the peers (BaaL), side by side in one run; `-- --quick` for a short run."""
    session.install("-e", ".[tracking]")  # benchmarks/bench_tracking.py logs to MLflow
    # BaaL 2.1.0 declares jupyter and structlog<23 that it does not need at run time
    session.install("--no-deps", "baal==2.1.0")
    session.install("structlog", "h5py", "tqdm", "torchmetrics", "scikit-learn")
    session.install("batchbald_redux")  # the peer of benchmarks/bench_batchbald.py
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session
def gpu_check(session: nox.Session) -> None:
    """benchmarks/gpu_check.py on this machine's GPU (the CPU when there is none), recorded in benchmarks/RESULTS.md."""
    session.install("-e", ".")
    session.run("python", "-m", "benchmarks.gpu_check", "--record", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (the same command .ci/run runs): a broken link or a page left out
    of the nav fails it; `-- serve` instead serves it at localhost:8000."""
    session.install("-e", ".[docs]")
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", f"{session.create_tmp()}/site", *session.posargs)
