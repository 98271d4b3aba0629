"""``iotwatch train`` and ``iotwatch evaluate``: the models for analysts (over :mod:`iotwatch.learn`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_ERROR, EXIT_USAGE, say, user_errors

Labels = Annotated[list[Path], typer.Argument(help="Label files (TSV: file, host_ip, host_mac, behaviour, "
                                              "first_bad_ts[, end_ts]; see docs/detection.md).", show_default=False)]
NJobs = Annotated[int, typer.Option("--n-jobs", "-j", help="Captures analysed (and trees grown) in parallel "
                                    "(joblib; -1: every core).")]
WindowOpt = Annotated[float, typer.Option("--window", "-w", help="Device window length in seconds.")]
Kind = Annotated[str, typer.Option("--kind", help="behaviour (what devices do, per window) or device_type "
                                   "(what devices are, from the label files' device_type column).")]
KINDS = ("behaviour", "device_type")
DaskOpt = Annotated[str | None, typer.Option("--dask", metavar="SCHEDULER",
                                             help="Analyse the captures and grow the trees on the Dask cluster whose "
                                             "scheduler is at this address (joblib's Dask backend; docs/distributed.md).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="The same on a local Dask cluster of this many "
                                                "worker processes.")]


@contextmanager
def _cluster(dask: str | None, workers: int | None, n_jobs: int) -> Iterator[int]:
    """joblib's Dask backend on the cluster asked for (yields the n_jobs to use: every worker
    unless -j says otherwise), or nothing."""
    if dask is None and workers is None:
        yield n_jobs
        return
    if dask is not None and workers is not None:
        say("iotwatch: usage error: --dask and --workers: give one (an existing cluster, or a local one)")
        raise typer.Exit(EXIT_USAGE)
    from ..parts.cluster import close, connect, joblib_backend

    with user_errors():
        client = connect(dask, workers)
    try:
        with joblib_backend(client):
            yield -1 if n_jobs == 1 else n_jobs
    finally:
        close(client)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise typer.BadParameter(f"one of {', '.join(KINDS)}", param_hint="--kind")
    return kind


def _warn(line: str) -> None:
    say(f"iotwatch: warning: {line}")


def train_command(labels: Labels, out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write "
                                                                    "(e.g. models/mysite).")],
                  n_jobs: NJobs = 1, seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
                  window: WindowOpt = 60.0, kind: Kind = "behaviour",
                  force: Annotated[bool, typer.Option("--force", help="Write a model that cannot tell anything "
                                                      "apart (only normal windows, or one type).")] = False,
                  catalogue: Annotated[Path | None, typer.Option(
                      "--catalogue", help="device_type: where to write the product catalogue built from the rows "
                      "that name a product (default: OUT/catalogue, which --type-model OUT then uses).")] = None,
                  dask: DaskOpt = None, workers: WorkersOpt = None) -> None:
    """Train a behaviour (or device-type) model from labelled captures into a bundle (skops + manifest)."""
    with _cluster(dask, workers, n_jobs) as n_jobs, user_errors():
        if _kind(kind) == "device_type":
            from ..learn.behaviour import check_out
            from ..learn.device_type import train_catalogue, train_type_model

            cat_out = catalogue if catalogue is not None else out / "catalogue"
            check_out(cat_out)  # both folders checked before any analysis
            path, ev = train_type_model(labels, out, n_jobs=n_jobs, force=force, warn=_warn)
            say(f"iotwatch: {ev.summary()}")
            say(f"iotwatch: model written to {path}")
            cat = train_catalogue(labels, cat_out, n_jobs=n_jobs)
            if cat is None:
                say("iotwatch: no labelled row names a product (column `product`): no catalogue written")
            else:
                m = cat.manifest["metrics"]
                say(f"iotwatch: product catalogue written to {cat_out}: {len(cat.products)} products, "
                    f"{len(cat.exemplars)} exemplars; leave one capture set out: product "
                    f"{m['product_accuracy']:.3f}, type {m['type_accuracy']:.3f} over {m['captures']} captures")
            return
        from ..learn.behaviour import train

        train(labels, out, window_s=window, n_jobs=n_jobs, seed=seed, force=force,
              log=lambda s: say(f"iotwatch: {s}"), warn=_warn)


def evaluate_command(labels: Labels,
                     model: Annotated[Path | None, typer.Option("--model", "-m", help="Bundle folder (default: "
                                                                "the bundled models/behaviour; with --kind "
                                                                "device_type: score this bundle instead of "
                                                                "grouped folds).")] = None,
                     no_model: Annotated[bool, typer.Option("--no-model", help="Rules only.")] = False,
                     report: Annotated[Path | None, typer.Option("--report", help="Also write the report (Markdown) "
                                                                 "to this file.")] = None,
                     n_jobs: NJobs = 1, window: WindowOpt = 60.0, kind: Kind = "behaviour",
                     dask: DaskOpt = None, workers: WorkersOpt = None,
                     by_source: Annotated[bool | None, typer.Option(
                         "--by-source/--no-by-source",
                         help="Leave-one-source-out first (the headline): for each family of captures (the "
                              "MANIFEST.tsv set, or the scenario that generated it) a model trained without it, "
                              "measured on it. Default: on unless --model or --no-model is given.")] = None) -> None:
    """Evaluate detection on labelled captures: per-class precision/recall/F1, false alarms per
    device-day, a confusion matrix and time to first alert. Without --model/--no-model the
    headline is leave-one-source-out (each family judged by a model that never saw it), then the
    shipped model's in-sample figures (--kind device_type: type accuracy by grouped folds, or of
    the --model bundle on these labels; per-class report and confusion matrix)."""
    with _cluster(dask, workers, n_jobs) as n_jobs, user_errors():
        if _kind(kind) == "device_type":
            from ..inventory.classify import TypeModel
            from ..learn.device_type import evaluate_type_model
            from ..learn.report import type_report

            given = None if no_model or model is None else TypeModel.load(model)
            text = type_report(evaluate_type_model(labels, n_jobs=n_jobs, model=given, warn=_warn))
        else:
            from ..detect import model as behaviour
            from ..learn.evaluate import evaluate

            bundle = None if no_model else (behaviour.load(model) if model is not None else behaviour.default_model())
            if by_source if by_source is not None else (model is None and not no_model):
                text = _by_source(labels, bundle, window, n_jobs)
            else:
                text = evaluate(labels, bundle, window_s=window, n_jobs=n_jobs, warn=_warn).markdown()
    typer.echo(text)
    if report is not None:
        try:
            report.write_text(text)
        except OSError as e:
            say(f"iotwatch: error: {report}: cannot write: {e.strerror or e}")
            raise typer.Exit(EXIT_ERROR) from None


def _by_source(labels: list[Path], bundle: object, window: float, n_jobs: int) -> str:
    """Leave-one-source-out (the headline), then ``bundle`` on the same captures (in-sample when
    it was trained on them): every capture analysed once."""
    from ..learn import loso

    pool = loso.build_pool(labels, window_s=window, n_jobs=n_jobs, warn=_warn)
    fams = pool.family_names()
    out = []
    if len(fams) > 1:
        folds = loso.leave_one_source_out(pool, n_jobs=n_jobs, log=lambda s: say(f"iotwatch: {s}"))
        out += ["## Leave-one-source-out (the headline)", "", loso.markdown(folds)]
    else:
        out += [f"(one source family, {fams[0] if fams else 'none'}: no leave-one-source-out figures)", ""]
    rep, _hits, _false = loso.score(pool, list(pool.observed), bundle, getattr(bundle, "name", None))
    out += ["## The given model on every capture (in-sample for captures it was trained on)", "", rep.markdown()]
    return "\n".join(out)
