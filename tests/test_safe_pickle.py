"""The restricted unpickler: plain data and numpy arrays in, everything else refused unrun."""

from __future__ import annotations

import copyreg
import os
import pickle

import numpy as np
import pytest

from sweeplab.data.safe_pickle import ForbiddenPickleError, safe_load, safe_loads


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Plain:
    pass


class _CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips_under_every_protocol(protocol):
    data = {"head": {0, 1, 14}, "middle": frozenset({2}), "tail": [3, (4, 5)], "x": 1.5, "ok": True,
            "none": None, "name": "person", "raw": b"\x00\xff"}
    assert safe_loads(pickle.dumps(data, protocol=protocol)) == data


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_and_scalars_round_trip(protocol):
    data = {"head": np.array([0, 1, 14]), "freq": np.arange(6, dtype=np.float32).reshape(2, 3),
            "n": np.int64(7), "objects": np.array([1, "a"], dtype=object)}
    loaded = safe_loads(pickle.dumps(data, protocol=protocol))
    assert np.array_equal(loaded["head"], data["head"]) and loaded["freq"].dtype == np.float32
    assert np.array_equal(loaded["freq"], data["freq"]) and loaded["n"] == 7
    assert loaded["objects"].tolist() == [1, "a"]


def test_os_system_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "class_split.pkl"
    path.write_bytes(pickle.dumps({"head": _RunsACommand(marker)}))
    with pytest.raises(ForbiddenPickleError, match=rf"{path}.*forbidden global (posix|nt|os)\.system"):
        safe_load(path)
    assert not marker.exists()


def test_eval_and_classes_are_refused():
    with pytest.raises(ForbiddenPickleError, match=r"builtins\.eval"):
        safe_loads(pickle.dumps(_CallsEval()))
    for protocol in (0, 2, 4):
        with pytest.raises(ForbiddenPickleError, match=r"forbidden global (copy_?reg\._reconstructor|.*_Plain)"):
            safe_loads(pickle.dumps(_Plain(), protocol=protocol))
    with pytest.raises(ForbiddenPickleError, match=r"collections\.OrderedDict"):
        from collections import OrderedDict

        safe_loads(pickle.dumps(OrderedDict(a=1)))


def test_codecs_encode_only_as_latin1():
    # protocol 0-2 pickles write bytes as _codecs.encode(text, "latin1"); any other codec is refused
    payload = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(ForbiddenPickleError, match="latin-1"):
        safe_loads(payload)
    assert safe_loads(b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.") == b"abc"


def test_extension_registry_opcodes_are_refused(tmp_path):
    marker = tmp_path / "ran"
    copyreg.add_extension("posix", "system", 0x7FFF_FF00)
    try:
        command = f"touch {marker}".encode()
        payload = b"\x80\x02\x84\x00\xff\xff\x7f(X" + len(command).to_bytes(4, "little") + command + b"tR."
        with pytest.raises(ForbiddenPickleError, match="extension code"):
            safe_loads(payload)
    finally:
        copyreg.remove_extension("posix", "system", 0x7FFF_FF00)
    assert not marker.exists()


def test_not_a_pickle_names_the_source(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"head: 0 1 2\n")
    with pytest.raises(pickle.UnpicklingError, match=str(path)):
        safe_load(path)
