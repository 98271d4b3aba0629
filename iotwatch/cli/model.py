"""``iotwatch train`` and ``iotwatch evaluate``: the behaviour model for analysts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_ERROR, say, user_errors

Labels = Annotated[list[Path], typer.Argument(help="Label files (TSV: file, host_ip, host_mac, behaviour, "
                                              "first_bad_ts[, end_ts]; see docs/detection.md).", show_default=False)]
NJobs = Annotated[int, typer.Option("--n-jobs", "-j", help="Captures analysed (and trees grown) in parallel "
                                    "(joblib; -1: every core).")]
WindowOpt = Annotated[float, typer.Option("--window", "-w", help="Device window length in seconds.")]
Kind = Annotated[str, typer.Option("--kind", help="behaviour (what devices do, per window) or device_type "
                                   "(what devices are, from the label files' device_type column).")]
KINDS = ("behaviour", "device_type")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise typer.BadParameter(f"one of {', '.join(KINDS)}", param_hint="--kind")
    return kind


def train_command(labels: Labels, out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write "
                                                                    "(e.g. models/mysite).")],
                  n_jobs: NJobs = 1, seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
                  window: WindowOpt = 60.0, kind: Kind = "behaviour") -> None:
    """Train a behaviour (or device-type) model from labelled captures into a bundle (skops + manifest)."""
    with user_errors():
        if _kind(kind) == "device_type":
            from ..inventory.train import train_type_model

            path, ev = train_type_model(labels, out, n_jobs=n_jobs)
            say(f"iotwatch: {ev.summary()}")
            say(f"iotwatch: model written to {path}")
            return
        from ..detect.train import train

        train(labels, out, window_s=window, n_jobs=n_jobs, seed=seed, log=lambda s: say(f"iotwatch: {s}"))


def evaluate_command(labels: Labels,
                     model: Annotated[Path | None, typer.Option("--model", "-m", help="Bundle folder (default: "
                                                                "the bundled models/behaviour).")] = None,
                     no_model: Annotated[bool, typer.Option("--no-model", help="Rules only.")] = False,
                     report: Annotated[Path | None, typer.Option("--report", help="Also write the report (Markdown) "
                                                                 "to this file.")] = None,
                     n_jobs: NJobs = 1, window: WindowOpt = 60.0, kind: Kind = "behaviour") -> None:
    """Evaluate detection on labelled captures: per-class precision/recall/F1, false alarms per
    device-day, a confusion matrix and time to first alert (--kind device_type: type accuracy by
    grouped folds, per-class report and confusion matrix)."""
    from ..detect import model as behaviour
    from ..detect.evaluate import evaluate

    if _kind(kind) == "device_type":
        from ..detect.report import _type_report
        from ..inventory.train import evaluate_type_model

        with user_errors():
            typer.echo(_type_report(evaluate_type_model(labels, n_jobs=n_jobs)))
        return
    with user_errors():
        bundle = None if no_model else (behaviour.load(model) if model is not None else behaviour.default_model())
        rep = evaluate(labels, bundle, window_s=window, n_jobs=n_jobs)
    text = rep.markdown()
    typer.echo(text)
    if report is not None:
        try:
            report.write_text(text)
        except OSError as e:
            say(f"iotwatch: error: {report}: cannot write: {e.strerror or e}")
            raise typer.Exit(EXIT_ERROR) from None
