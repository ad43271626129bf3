"""Shared fixtures. Integration tests run real sweeps on a local Ray with a real MLflow store."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cluster import session_pids  # noqa: F401  (tests import it from here)
from sweeplab.loopback import keep_local_ray_on_loopback

keep_local_ray_on_loopback()  # the tests' local Ray stays on 127.0.0.1 (before any test imports ray)

from sweeplab.engine import MemoryReporter  # noqa: E402 - after the loopback setting (it imports no Ray)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A clean working directory: the default mlflow.db and sweeplab_results land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def write_sweep(folder: Path, name: str, num_samples: int, epochs: int, **sections) -> Path:
    """A sweep of the CE baseline on the built-in noisy digits."""
    doc = {
        "name": name,
        "seed": 0,
        "dataset": {"name": "noisy_digits", "noise_rate": 0.2},
        "model": {"backbone": "small_cnn"},
        "methods": {"ce": {"num_samples": num_samples, "overrides": {"epochs": epochs}}},
        "search": {"sampler": "tpe", "max_concurrent": 2, "n_startup_trials": 2},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1},
    }
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session this test started (never anything else)."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def end_session(proc) -> None:
    """SIGKILL a sweep process started in its own session, with everything it started (its Ray),
    and wait for the session's stragglers (of this session only)."""
    kill_session(proc.pid)
    proc.wait()
    for _ in range(30):
        if not session_pids(proc.pid):
            break
        time.sleep(1)


def runs_of(uri: str, experiment: str):
    """(client, study parent runs, trial child runs) of an MLflow experiment."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweeplab.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return c, parents, children


def finished_trial_ids(uri: str, experiment: str) -> set[str]:
    """The trials MLflow records as finished (none while the sweep is still creating the store)."""
    try:
        _, _, children = runs_of(uri, experiment)
    except Exception:  # noqa: BLE001 - the store or the experiment is still being created
        return set()
    return {r.data.tags["sweeplab.trial_id"] for r in children if r.data.tags.get("sweeplab.status") == "finished"}


# -- a tiny VOC-MLT tree in the published layout (VOCdevkit + longtail2012/img_id.txt) ------------

def _jpeg(path, color=(120, 30, 200), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def _voc_xml(path, objects):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
        f"<ymax>9</ymax></bndbox></object>"
        for name, difficult in objects
    )
    path.write_text(f"<annotation><folder>VOC</folder><filename>{path.stem}.jpg</filename>"
                    f"<size><width>20</width><height>16</height><depth>3</depth></size>{body}</annotation>")


VOC_TRAIN = {  # VOC2012 id -> objects (name, difficult)
    "2008_000008": [("horse", 0), ("person", 0)],
    "2008_000015": [("bottle", 0), ("bottle", 0)],
    "2008_000019": [("dog", 0)],
    "2008_000023": [("person", 0), ("tvmonitor", 1)],
    "2009_000001": [("person", 0)],
    "2010_000002": [("aeroplane", 0)],
}
VOC_TEST = {"000001": [("dog", 0), ("person", 0)], "000004": [("car", 1)], "000006": [("sofa", 0)]}


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOCdevkit"
    for year, items in (("VOC2012", VOC_TRAIN), ("VOC2007", VOC_TEST)):
        for image_id, objects in items.items():
            _jpeg(root / year / "JPEGImages" / f"{image_id}.jpg")
            _voc_xml(root / year / "Annotations" / f"{image_id}.xml", objects)
    _voc_xml(root / "VOC2012" / "Annotations" / "2011_000999.xml", [("cat", 0)])  # not in the id list
    _jpeg(root / "VOC2012" / "JPEGImages" / "2011_000999.jpg")
    (root / "longtail2012").mkdir()
    (root / "longtail2012" / "img_id.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (root / "VOC2007" / "ImageSets" / "Main").mkdir(parents=True)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").write_text("\n".join(VOC_TEST) + "\n")
    return root





class StopAfter(MemoryReporter):
    """A reporter that stops the trial after epoch ``epoch`` as Ctrl-C would: its last checkpoint
    is what a resumed trial starts from."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        if metrics["epoch"] == self.epoch:
            raise KeyboardInterrupt
