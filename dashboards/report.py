"""``sweeplab report``: the run's records (``dashboards.queries``) drawn as one self-contained
page (``dashboards.page``), written beside the run and logged to each study's parent run."""

from __future__ import annotations

import logging
from pathlib import Path

from dashboards import page, queries

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def write_report(folder, out: str | Path | None = None, log_to_mlflow: bool = True) -> Path:
    """Write the report of the run in ``folder`` (a ``RunFolder``) to ``out`` (default:
    ``report.html`` in the run's folder, uploaded too for an object-store run) and log it as
    an artifact of every study's parent run."""
    from sweeplab import tracking

    records = queries.load_run(folder)
    path = Path(out) if out is not None else Path(folder.local) / REPORT_FILE
    page.write(records, path)
    if out is None and folder.remote:
        try:
            folder.push(REPORT_FILE)
        except OSError as exc:
            log.warning("could not upload %s to %s: %s", REPORT_FILE, folder.location, exc)
    if log_to_mlflow:
        c = tracking.client(records.tracking_uri)
        rows = {row.method: row for row in records.leaderboard}
        for study in records.studies:
            if study.parent_run_id:
                try:
                    c.log_artifact(study.parent_run_id, str(path))
                    for key, value in leaderboard_tags(rows.get(study.method)).items():
                        c.set_tag(study.parent_run_id, key, value)
                except Exception as exc:  # noqa: BLE001 - the page exists on disk all the same
                    log.warning("could not log %s to MLflow run %s: %s", path.name, study.parent_run_id, exc)
    return path


def leaderboard_tags(row) -> dict[str, str]:
    """A study's confirmed result as tags of its parent run, so MLflow's run list marks the winner."""
    if row is None:
        return {}
    tags = {"sweeplab.confirmed.test_mean": f"{row.test_mean:.6g}", "sweeplab.confirmed.test_std": f"{row.test_std:.6g}",
            "sweeplab.confirmed.seeds": str(len(row.seeds)),
            "sweeplab.leaderboard": "baseline" if row.baseline else ("winner" if row.winner else
                                                                      "significant" if row.significant else "not significant")}
    if row.p_value is not None:
        tags["sweeplab.confirmed.p_value"] = f"{row.p_value:.4g}"
    if row.diff is not None:
        tags["sweeplab.confirmed.diff"] = f"{row.diff:+.6g}"
    return tags
