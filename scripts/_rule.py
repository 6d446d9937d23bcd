"""What every rule script shares: its body runs with the job's log, under Snakemake or standalone.

Under Snakemake a script calls ``run(main, snakemake)``. Run by hand
(``python scripts/train.py --env pong --model rnn_deconv --seed 0``), the same call builds the
``snakemake`` object the Snakefile would give that job (inputs, outputs, params, threads, log:
after PyPSA-Eur's ``mock_snakemake``), so no script repeats a path or a default. ``--help``
lists the rule's wildcards.

The log file receives stdout, stderr, ``logging`` records, warnings and, if the body fails, the
full traceback, before the error propagates to Snakemake.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(main: Callable, snakemake=None, argv: list[str] | None = None) -> None:
    """Run ``main(snakemake)`` with the job's log; standalone when ``snakemake`` is None."""
    if snakemake is None:
        snakemake = mock_snakemake(Path(inspect.getfile(main)).name, argv)
    with job_log(snakemake.log[0]):
        main(snakemake)


@contextlib.contextmanager
def job_log(path: str | Path):
    """Send stdout, stderr, logging and warnings to ``path``; write a failure's traceback there."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    saved = sys.stdout, sys.stderr
    with open(path, "w", buffering=1) as log:
        sys.stdout = sys.stderr = log
        logging.basicConfig(
            stream=log, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True
        )
        logging.captureWarnings(True)
        try:
            yield log
        except BaseException:
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout, sys.stderr = saved
            logging.getLogger().handlers.clear()
            logging.captureWarnings(False)


def mock_snakemake(script: str, argv: list[str] | None = None):
    """The ``snakemake`` object of the job of the rule whose script is ``script``, with the
    wildcards and config files given on the command line (``argv``)."""
    from snakemake.api import SnakemakeApi
    from snakemake.dag import DAG
    from snakemake.jobs import Job
    from snakemake.script import Snakemake
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    os.chdir(ROOT)  # the Snakefile's paths are relative to the repository root
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--configfile",
        nargs="*",
        default=[],
        help="config files merged over config/config.yaml, as with snakemake --configfile",
    )
    common.add_argument("--cores", type=int, default=os.cpu_count(), help="threads for the job")
    known, _ = common.parse_known_args(argv)
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=known.cores),
            config_settings=ConfigSettings(configfiles=[Path(f) for f in known.configfile]),
            storage_settings=StorageSettings(),
            snakefile=ROOT / "workflow" / "Snakefile",
            workdir=ROOT,
        )
        workflow_api.dag(DAGSettings(rerun_triggers=[]))
        workflow = workflow_api._workflow  # the API exposes no public handle on rules and jobs
        rule = next(r for r in workflow.rules if r.script and Path(r.script).name == script)
        ap = argparse.ArgumentParser(
            prog=f"python scripts/{script}",
            parents=[common],
            description=f"Run one job of the rule `{rule.name}` with the inputs, outputs and "
            "params the Snakefile gives it (its inputs must exist: run snakemake up to them).",
        )
        for name in sorted(rule.wildcard_names):
            ap.add_argument(f"--{name}", required=True, help=f"the {{{name}}} wildcard")
        args = ap.parse_args(argv)
        wildcards = {name: getattr(args, name) for name in rule.wildcard_names}
        job = Job(rule, DAG(workflow, rules=[rule]), wildcards)
        for path in [*job.output, *job.log]:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return Snakemake(
            job.input,
            job.output,
            job.params,
            job.wildcards,
            job.threads,
            job.resources,
            job.log,
            workflow.config,
            rule.name,
            None,
        )
