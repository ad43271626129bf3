"""Where runs live: folder and object-store locations (no store needed for these)."""

import pytest

from sweeplab import storage
from sweeplab.storage import RunFolder


def test_join_keeps_a_uris_query_options():
    uri = "s3://bucket/sweeps?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.join(uri, "demo", "20261126-000000") == \
        "s3://bucket/sweeps/demo/20261126-000000?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.join("s3://bucket/", "demo") == "s3://bucket/demo"
    assert storage.join("/mnt/shared/runs", "demo") == "/mnt/shared/runs/demo"


def test_an_object_store_run_has_a_local_copy_per_machine_a_folder_is_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPLAB_CACHE", str(tmp_path / "cache"))
    remote = RunFolder.at("s3://bucket/sweeps/demo/20261126-000000")
    assert remote.remote and remote.local.is_relative_to(tmp_path / "cache" / "runs")
    assert remote.local.name.startswith("20261126-000000-")
    assert RunFolder.at("s3://bucket/sweeps/demo/20261126-000001").local != remote.local
    # one local copy per run, however its URI is spelt (endpoint options may differ between machines)
    for spelling in ("s3://bucket/sweeps/demo/20261126-000000/", "s3://bucket//sweeps/demo/20261126-000000",
                     "s3://bucket/sweeps/demo/20261126-000000?endpoint_override=10.0.0.5:9000"):
        assert RunFolder.at(spelling).local == remote.local
    assert remote.lock_path.parent == remote.local.parent  # outside the copy a download replaces
    assert remote.tune_path("ce") == "s3://bucket/sweeps/demo/20261126-000000/ce"
    local = RunFolder.at(str(tmp_path / "run"))
    assert not local.remote and local.local == tmp_path / "run" and local.tune_path("ce") == str(tmp_path / "run" / "ce")
    local.push()  # nothing to upload for a folder


def test_new_runs_of_a_folder_never_share_a_folder_and_the_newest_is_found(tmp_path):
    first = storage.new_run_folder(str(tmp_path), "demo")
    second = storage.new_run_folder(str(tmp_path), "demo")
    assert first.local != second.local and first.local.parent == second.local.parent == tmp_path / "demo"
    for run in (first, second):
        (run.local / storage.RESOLVED_FILE).write_text("name: demo\n")
        (run.local / storage.STATE_FILE).write_text("{}")
    assert storage.find_run("demo", str(tmp_path)).local == second.local  # by sweep name
    assert storage.find_run(str(first.local)).local == first.local  # by run folder
    assert storage.find_run(str(first.local) + "/").location == first.location  # one spelling
    with pytest.raises(FileNotFoundError, match="no sweep run found at 'other'"):
        storage.find_run("other", str(tmp_path))


def test_an_unreachable_object_store_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    # a closed port on loopback: refused at once
    uri = "s3://bucket/sweeps?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1&connect_timeout=1"
    with pytest.raises(storage.StorageUnreachable, match=r"storage.path s3://bucket/sweeps\?.*cannot write there"):
        storage.new_run_folder(uri, "demo")


def test_a_run_in_use_on_this_machine_is_refused_before_its_local_copy_is_touched(tmp_path, monkeypatch):
    from sweeplab import runner

    store = tmp_path / "store" / "demo" / "20261126-000000"
    store.mkdir(parents=True)
    (store / storage.RESOLVED_FILE).write_text("name: demo\n")
    (store / storage.STATE_FILE).write_text("{}")
    monkeypatch.setenv("SWEEPLAB_CACHE", str(tmp_path / "cache"))
    run = storage.find_run(f"file://{store}")  # file:// stands in for an object store: pyarrow reads both alike
    assert run.remote
    run.local.mkdir(parents=True)
    (run.local / storage.JOURNAL_FILE).write_text("the running driver's journal")
    with storage.exclusive(run.lock_path):  # a driver runs it
        with pytest.raises(storage.RunInUse, match="in use by another sweeplab process on this machine"):
            runner.resume_sweep(run)
    assert (run.local / storage.JOURNAL_FILE).read_text() == "the running driver's journal"
    assert run.pull().local == run.local and not (run.local / storage.JOURNAL_FILE).exists()  # now replaced
    assert (run.local / storage.RESOLVED_FILE).read_text() == "name: demo\n"
