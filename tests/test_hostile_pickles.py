"""Hostile network files (issue #17, item 4): the PyTorch, TensorFlow and torch-weights
readers refuse them with one ValueError on one line, run none of their code, and stay
within bounded memory and time.

Files come from tests/hostile_pickles.py (hand-made attacks and a seeded mutator of valid
files); each batch is read in one child process with a capped address space, so a crash
or an allocation the readers did not bound fails the case instead of the session.
More fuzzing: SGJ_FUZZ_CASES=20000 SGJ_FUZZ_SEED=7 python3 -m pytest -q
tests/test_hostile_pickles.py -k mutated (default: 240 cases, seed 0).
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import hostile_pickles as hp
import numpy as np
import pytest
from official_fixtures import DATA

from stylegan_jax import cli
from stylegan_jax.convert import pickles, torch_stylegan2
from stylegan_jax.convert.safe_pickle import Budget, PickleFileError, scan, strided_copy

FUZZ_CASES = int(os.environ.get("SGJ_FUZZ_CASES", "240"))
FUZZ_SEED = int(os.environ.get("SGJ_FUZZ_SEED", "0"))
SECONDS_PER_CASE = 3.0  # generous: the machine is shared; cases take milliseconds


def _read_in_child(cases: list[hp.Case], tmp_path: Path) -> list[dict]:
    """Reads every case in one capped child process (hostile_pickles.main); its rows."""
    folder = tmp_path / "cases"
    folder.mkdir()
    manifest = []
    for i, case in enumerate(cases):
        path = folder / f"{i:04d}.{'pth' if case.reader == 'torch' else 'pkl'}"
        path.write_bytes(case.data)
        manifest.append({"name": case.name, "reader": case.reader, "path": str(path)})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    results = tmp_path / "results.jsonl"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, hp.__file__, str(tmp_path / "manifest.json"), str(results)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120 + len(cases))
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    last = rows[-1]["name"] if rows and "name" in rows[-1] else "none"
    assert proc.returncode == 0, (f"the reading process died (status {proc.returncode}; last "
                                  f"case read: {last}): {proc.stderr[-3000:]}")
    *rows, final = rows
    assert final == {"integrity": True}, "a pickle changed the readers' classes or stand-ins"
    assert [r["name"] for r in rows] == [c.name for c in cases]
    for row, entry in zip(rows, manifest, strict=True):
        row["path"] = entry["path"]
    return rows


def _problem(row: dict, case: hp.Case) -> str | None:
    """What is wrong with how the reader met this case (None: nothing)."""
    if row["seconds"] > SECONDS_PER_CASE:
        return f"took {row['seconds']:.1f} s"
    if case.marker and Path(case.marker).exists():
        return "ran the file's code"
    if row["status"] == "ok":
        return None if case.expect is None else f"was read: {row['value']}"
    message = row["message"]
    if not row["pickle_file_error"]:
        return f"raised {row['status']}, not PickleFileError: {message[:300]}"
    if "\n" in message or len(message) > 600 or not message.startswith(row["path"]):
        return f"message is not one line naming the file: {message[:700]!r}"
    if "MemoryError" in message:
        return f"allocated before checking: {message}"
    if case.expect and not re.search(case.expect, message):
        return f"refused for another reason: {message}"
    return None


def _assert_all_fine(rows: list[dict], cases: list[hp.Case]) -> None:
    problems = [f"{case.name}: {p}" for row, case in zip(rows, cases, strict=True)
                if (p := _problem(row, case))]
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)


def test_code_payloads_run_under_plain_pickle(tmp_path):
    """Control: the payloads below are real (each creates its marker under pickle.loads)."""
    cases = [c for c in hp.code_cases(tmp_path) if c.reader == "official"]
    for i, case in enumerate(cases):
        (tmp_path / f"{i}.pkl").write_bytes(case.data)
    script = ("import copyreg, glob, pickle, sys\n"
              f"copyreg.add_extension('builtins', 'open', {hp.EXT_CODE})\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n"
              "        pickle.loads(open(name, 'rb').read())\n"
              "    except Exception:\n"
              "        pass\n")
    files = [str(tmp_path / f"{i}.pkl") for i in range(len(cases))]
    subprocess.run([sys.executable, "-c", script, *files], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    assert [c.name for c in cases if not Path(c.marker).exists()] == []


def test_hand_made_hostile_files_are_refused(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cases = hp.code_cases(markers) + hp.hostile_cases(markers)
    rows = _read_in_child(cases, tmp_path)
    _assert_all_fine(rows, cases)
    assert list(markers.iterdir()) == []
    # the cases that may be read are valid files carrying code: they are read, not run
    assert {c.name for c, r in zip(cases, rows, strict=True) if r["status"] == "ok"} == {
        c.name for c in cases if c.expect is None}


def _bases() -> list[tuple[str, str, bytes]]:
    """(name, reader, bytes) of valid files: official and torch-written ones, TF ones."""
    return [
        ("tiny.pkl", "official", (DATA / "torch_pickle" / "tiny.pkl").read_bytes()),
        *((f"tf protocol {p}", "tf", hp.tf_network_pickle(p)) for p in (0, 2, 4)),
        ("tiny_legacy.pth", "torch", (DATA / "torch_state_dict" / "tiny_legacy.pth").read_bytes()),
        ("tiny_zip.pth", "torch", (DATA / "torch_state_dict" / "tiny_zip.pth").read_bytes()),
    ]


def test_mutated_files_fail_cleanly(tmp_path):
    rng = random.Random(FUZZ_SEED)
    bases = _bases()
    cases = [hp.Case(f"{name} (unchanged)", reader, data, None) for name, reader, data in bases]
    offsets = {name: hp.opcode_offsets(data) for name, _, data in bases}
    for i, (name, reader, data) in zip(range(FUZZ_CASES), itertools.cycle(bases)):
        if name.endswith(".pth") and data[:2] == b"PK":
            what, mutated = hp.mutate_zip(data, rng)
        else:
            what, mutated = hp.mutate(data, rng, offsets[name])
        cases.append(hp.Case(f"{i}: {name}: {what}", reader, mutated, None))
    rows = _read_in_child(cases, tmp_path)
    unchanged = [r["status"] for r in rows[:len(bases)]]
    assert unchanged == ["ok"] * len(bases)  # the valid files still read
    _assert_all_fine(rows[len(bases):], cases[len(bases):])
    read = sum(r["status"] == "ok" for r in rows[len(bases):])
    if FUZZ_CASES >= 50:  # the mutations both break files and leave some readable
        assert 0 < read < FUZZ_CASES


@pytest.mark.parametrize("name", ["os.system", "builtins.exec"])
def test_cli_reports_a_hostile_file_on_one_line(tmp_path, capsys, name):
    (case,) = [c for c in hp.code_cases(tmp_path) if c.name == f"official: {name}"]
    path = tmp_path / "net.pkl"
    path.write_bytes(case.data)
    assert cli.main(["convert", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"stylegan-jax convert: error: {path}: ")
    assert "refusing to load" in err
    assert not Path(case.marker).exists() and not (tmp_path / "out").exists()


def test_cli_reports_a_terabyte_tensor_on_one_line(tmp_path, capsys):
    (case,) = [c for c in hp.hostile_cases(tmp_path)
               if c.name == "official: tensor of 4 TiB by stride 0"]
    path = tmp_path / "net.pkl"
    path.write_bytes(case.data)
    assert cli.main(["convert", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than the file could hold" in err


def test_scan_accepts_every_protocol_and_opcode_family():
    """No false refusals: what pickle itself writes (protocols 0-5) scans to its end."""
    shared = [1, 2]
    value = {"ints": [0, 1, -1, 255, 65535, 2**31, -(2**31) - 1, 2**100, -(2**1000)],
             "floats": (0.5, -1e300), "text": ("", "a\nb", "é" * 300, "x" * 70000),
             "bytes": (b"", b"\x00" * 300, bytearray(b"ab")), "singletons": (None, True, False),
             "sets": ({1, 2}, frozenset({3}), set()), "nested": [[[(1,)]], {"k": {"k": ()}}],
             "shared": (shared, shared), "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4))}
    for protocol in range(6):
        data = pickle.dumps(value, protocol=protocol)
        for variant in (data, pickle._dumps(value, protocol=protocol)):
            assert scan(variant) == len(variant), protocol
            assert scan(variant + b"tail") == len(variant)


def test_strided_copy_matches_index_arithmetic():
    """Against element-by-element indexing: flat[offset + sum(i_k * stride_k)]."""
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(64).astype(np.float32)
    for size, stride, offset in [((3, 4), (4, 1), 5), ((4, 3), (1, 4), 0), ((), (), 9),
                                 ((2, 3, 2), (0, 5, 2), 7), ((5,), (3,), 50), ((0, 7), (7, 1), 63)]:
        got = strided_copy(flat, offset, size, stride, Budget(10**6))
        want = np.zeros(size, np.float32)
        for index in itertools.product(*map(range, size)):
            want[index] = flat[offset + sum(i * s for i, s in zip(index, stride, strict=True))]
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous and got.shape == size
    with pytest.raises(PickleFileError, match="runs past its storage"):
        strided_copy(flat, 60, (5,), (1,), Budget(10**6))
    with pytest.raises(PickleFileError, match="more than the file could hold"):
        strided_copy(flat, 0, (2**20, 2**20), (0, 0), Budget(10))


@pytest.mark.parametrize("kwargs,message", [
    ({"z_dim": [1, 2]}, r"z_dim=\[1, 2\] is not an integer in \[1, 1048576\]"),
    ({"z_dim": 10**30}, r"z_dim=1000000000000000000000000000000 is not an integer"),
    ({"w_dim": 0}, r"w_dim=0 is not an integer in \[1, "),
    ({"mapping_kwargs": "x"}, "mapping_kwargs is a str, expected a dict"),
    ({"synthesis_kwargs": {"conv_clamp": {}}}, r"conv_clamp=\{\} is not a number"),
    ({"synthesis_kwargs": {"architecture": "y" * 5000}}, "architecture"),
])
def test_hostile_network_kwargs_are_named_on_one_line(tmp_path, kwargs, message):
    """Kwargs of the wrong type or absurd size: a ConversionError naming the field, before
    anything is sized by them (no TypeError, OverflowError or huge allocation)."""
    init = {"z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 8, "img_channels": 3,
            "mapping_kwargs": {}, "synthesis_kwargs": {}, **kwargs}
    path = tmp_path / "net.pkl"
    path.write_bytes(hp.official_pickle({}, init_kwargs=init))
    with pytest.raises(torch_stylegan2.ConversionError, match=message) as e:
        torch_stylegan2.networks_from_pickle(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600


@pytest.mark.parametrize("static_kwargs,message", [
    ({"resolution": 10**30}, r"G_paper kwarg 'resolution'=10+ is not a plain kwarg value"),
    ({"resolution": [[8]]}, r"kwarg 'resolution'=\[\[8\]\] is not a plain kwarg value"),
    ({"resolution": None}, r"not a supported G_paper network"),
])
def test_hostile_tf_kwargs_are_named_on_one_line(tmp_path, static_kwargs, message):
    path = tmp_path / "net.pkl"
    path.write_bytes(hp.tf_network_pickle(2, static_kwargs=static_kwargs))
    with pytest.raises(ValueError, match=message) as e:
        pickles.networks_from_tf_pickle(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600
