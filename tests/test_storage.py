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
    assert storage.open_run_folder("demo", str(tmp_path)).local == second.local  # by sweep name
    assert storage.open_run_folder(str(first.local)).local == first.local  # by run folder
    with pytest.raises(FileNotFoundError, match="no sweep run found at 'other'"):
        storage.open_run_folder("other", str(tmp_path))


def test_an_unreachable_object_store_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    # a closed port on loopback: refused at once
    uri = "s3://bucket/sweeps?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1&connect_timeout=1"
    with pytest.raises(storage.StorageUnreachable, match=r"storage.path s3://bucket/sweeps\?.*cannot write there"):
        storage.new_run_folder(uri, "demo")
