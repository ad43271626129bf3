"""The command line: validate, methods, and bad input refused before anything starts."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, write_sweep

SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]


def sweeplab(*args, cwd):
    return subprocess.run(SWEEPLAB + list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_validate_accepts_the_shipped_sweeps_on_built_in_data(tmp_path):
    done = sweeplab("validate", "--profile", "demo", *sorted(str(p) for p in (REPO / "sweeps").glob("*.yaml")),
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "noisy_digits.yaml: ok" in done.stdout and "lt_multilabel.yaml: ok" in done.stdout


def test_lt_multilabel_validates_on_a_voc_tree_and_names_a_missing_root(tmp_path, voc_root):
    sweep = str(REPO / "sweeps" / "lt_multilabel.yaml")
    done = sweeplab("validate", sweep, "--set", f"dataset.root={voc_root}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    missing = tmp_path / "no" / "VOCdevkit"
    done = sweeplab("validate", sweep, "--set", f"dataset.root={missing}", cwd=tmp_path)
    assert done.returncode == 1
    assert "lt_multilabel.yaml: dataset.root:" in done.stderr and str(missing) in done.stderr


def test_validate_reports_every_problem_with_file_and_key(tmp_path):
    path = write_sweep(tmp_path, "bad", num_samples=0, epochs=3, search={"sampler": "annealing"})
    done = sweeplab("validate", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{path.name}: methods.ce.num_samples:" in done.stderr
    assert f"{path.name}: search.sampler:" in done.stderr and "tpe" in done.stderr


def test_run_refuses_a_bad_file_before_starting_ray(tmp_path):
    path = write_sweep(tmp_path, "bad", num_samples=2, epochs=3, dataset={"name": "image_folder", "root": "nowhere"})
    done = sweeplab("run", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert "dataset.root" in done.stderr and "nowhere" in done.stderr
    assert not (tmp_path / "sweeplab_results").exists() and not (tmp_path / "mlflow.db").exists()


def test_resume_of_an_unknown_sweep_says_where_it_looked(tmp_path):
    done = sweeplab("resume", "no_such_sweep", cwd=tmp_path)
    assert done.returncode == 2 and "no_such_sweep" in done.stderr


def test_methods_lists_the_registry(tmp_path):
    done = sweeplab("methods", cwd=tmp_path)
    assert done.returncode == 0
    assert "ce" in done.stdout and "val/acc (max)" in done.stdout


def test_resume_ignores_a_run_folder_without_state(tmp_path):
    from sweeplab.storage import RESOLVED_FILE, STATE_FILE

    sweep_dir = tmp_path / "sweeplab_results" / "x"
    good, broken = sweep_dir / "20260101-000000", sweep_dir / "20260102-000000"
    for folder in (good, broken):
        folder.mkdir(parents=True)
        (folder / RESOLVED_FILE).write_text("name: x\n")
    (good / STATE_FILE).write_text("{}")
    from sweeplab import storage

    assert storage.find_run("x", str(tmp_path / "sweeplab_results")).local == good  # the newer one never started


def test_broken_and_hostile_files_are_refused_without_a_traceback(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    laughs = tmp_path / "laughs.yaml"
    names = ["a"] + [f"b{i}" for i in range(8)]
    laughs.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [{', '.join(['*' + below] * 9)}]\n" for below, name in zip(names, names[1:])))
    for path, text in ((latin1, "not UTF-8 text: byte 0xe9 at offset 9"), (laughs, "aliases")):
        done = sweeplab("validate", str(path), cwd=tmp_path)
        assert done.returncode == 1 and f"{path}: " in done.stderr and text in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        done = sweeplab("run", str(path), cwd=tmp_path)  # refused the same way before anything starts
        assert done.returncode == 2 and text in done.stderr and "Traceback" not in done.stderr


def test_version_and_help_for_every_option_and_argument():
    import argparse

    import sweeplab
    from sweeplab.cli import build_parser

    done = subprocess.run(SWEEPLAB + ["--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"sweeplab {sweeplab.__version__}"
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"sweeplab {name}: {action.dest} has no help text"


def test_status_and_report_name_a_run_that_does_not_exist(tmp_path):
    for command in ("status", "report", "confirm"):
        done = sweeplab(command, "nothing_here", cwd=tmp_path)
        assert done.returncode == 2 and "nothing_here" in done.stderr, (command, done.stderr)
