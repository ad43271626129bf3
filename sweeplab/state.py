"""What a sweep run keeps beside Tune's own experiment folders, so that ``sweeplab resume`` runs
exactly what was started: the resolved sweep file with copies of its search spaces, and
``state.json`` (the MLflow experiment and parent runs, which studies are complete)."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from sweeplab.spec import Sweep
from sweeplab.storage import RESOLVED_FILE, SPACES_FOLDER, STATE_FILE


@dataclass
class SweepState:
    """What ``sweeplab resume`` needs beyond Tune's own experiment folders."""

    sweep: str
    tracking_uri: str
    experiment_id: str
    commit: str | None
    created: str
    studies: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | bytes) -> "SweepState":
        return cls(**json.loads(text))

    @classmethod
    def load(cls, run_dir: Path) -> "SweepState":
        return cls.from_json((run_dir / STATE_FILE).read_text())

    def save(self, run_dir: Path) -> None:
        tmp = run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        tmp.replace(run_dir / STATE_FILE)


def write_resolved(sweep: Sweep, run_dir: Path) -> None:
    """Save the resolved sweep file in the run folder with copies of its search spaces, so a
    resume runs exactly what was started even if the files in the repository change."""
    doc = copy.deepcopy(sweep.document)
    (run_dir / SPACES_FOLDER).mkdir()
    for study in sweep.studies:
        copied = run_dir / SPACES_FOLDER / f"{study.method}.yaml"
        shutil.copyfile(study.space_file, copied)
        doc["methods"][study.method]["search_space"] = str(copied.relative_to(run_dir))
    (run_dir / RESOLVED_FILE).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
