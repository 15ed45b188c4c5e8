"""Hostile network files for the readers' fuzz test (tests/test_hostile_pickles.py).

`hostile_cases` hand-assembles opcode streams and archives that attack the readers:
names outside the allow-lists reached through every opcode that resolves one, absurd
sizes, memo and MARK abuse, nesting, cycles, shared-graph blow-ups, stand-ins altered by
BUILD, broken torch zips. `mutate` is a seeded mutator of valid files (truncation, byte
flips, opcode substitution and insertion, slices duplicated or removed).

Run as a script (`python hostile_pickles.py MANIFEST RESULTS`), it reads every case of
the manifest with its reader in a process whose address space is capped a little above
what it holds after importing the readers, and writes one JSON line per case. A crash,
a hang or an unbounded allocation is thus that case's failure, not the test session's.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import pickletools
import random
import struct
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADROOM = 512 * 2**20  # address space the readers may grow by while reading one file


@dataclass
class Case:
    name: str
    reader: str  # official | tf | torch
    data: bytes
    expect: str | None  # regex the refusal must match; None: reading may also succeed
    marker: str | None = None  # file the payload creates if its code runs


# ---------------------------------------------------------------------------------
# A small assembler (opcodes from the pickle module)


def proto(n: int) -> bytes:
    return pickle.PROTO + bytes([n])


def glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    b = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def stack_global(module: str, name: str) -> bytes:
    return text(module) + text(name) + pickle.STACK_GLOBAL


def call(func: bytes, *args: bytes) -> bytes:
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def stream(*parts: bytes, protocol: int = 2) -> bytes:
    return proto(protocol) + b"".join(parts) + pickle.STOP


def _code_payloads(marker: str) -> dict[str, bytes]:
    """Bodies (no PROTO/STOP) that create `marker` when unpickled by pickle itself."""
    py = f"open({marker!r}, 'w').close()"
    touch = text(f"touch {marker}")
    import_os = call(glob("builtins", "__import__"), text("os"))
    inner = stream(call(glob("os", "system"), touch))
    return {
        "os.system": call(glob("os", "system"), touch),
        "posix.system": call(glob("posix", "system"), touch),
        "os.system/STACK_GLOBAL": call(stack_global("os", "system"), touch),
        "subprocess.check_call": call(glob("subprocess", "check_call"),
                                      pickle.EMPTY_LIST + pickle.MARK + text("touch")
                                      + text(marker) + pickle.APPENDS),
        "builtins.eval": call(glob("builtins", "eval"), text(py)),
        "builtins.exec": call(glob("builtins", "exec"), text(py)),
        "builtins.open": call(glob("builtins", "open"), text(marker), text("w")),
        "io.FileIO": call(glob("_io", "FileIO"), text(marker), text("w")),
        "builtins.getattr": call(call(glob("builtins", "getattr"), import_os, text("system")),
                                 touch),
        "functools.partial": call(call(glob("functools", "partial"), glob("os", "system"),
                                       touch)),
        "operator.attrgetter": call(call(call(glob("operator", "attrgetter"), text("system")),
                                         import_os), touch),
        "importlib.import_module": call(call(glob("builtins", "getattr"), call(
            glob("importlib", "import_module"), text("os")), text("system")), touch),
        "pickle.loads": call(glob("pickle", "loads"),
                             pickle.BINBYTES + struct.pack("<I", len(inner)) + inner),
        # protocol 0/1 routes to a callable: INST and OBJ call it with the marked arguments
        "INST": pickle.MARK + touch + pickle.INST + b"os\nsystem\n",
        "OBJ": pickle.MARK + glob("os", "system") + touch + pickle.OBJ,
        # an extension code the reader's process registers for builtins.open
        "EXT1": call(pickle.EXT1 + bytes([EXT_CODE]), text(marker), text("w")),
    }


EXT_CODE = 240  # copyreg.add_extension('builtins', 'open', EXT_CODE) in the reading process


def code_cases(marker_dir: Path) -> list[Case]:
    """Payloads that run code under plain pickle.loads (the control test shows they do)."""
    out = []
    for reader in ("official", "tf", "torch"):
        for name in _code_payloads(""):
            marker = str(marker_dir / f"{reader}-{_slug(name)}")
            body = _code_payloads(marker)[name]
            expect = r"refusing to load|extension-registry"
            out.append(Case(f"{reader}: {name}", reader, stream(body), expect, marker))
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


# ---------------------------------------------------------------------------------
# Valid files and their parts (official writers: tests/official_pickle.py, tf_pickle.py)


def tf_network_pickle(protocol: int, **state) -> bytes:
    """A small (G, D, Gs) TF pickle; `state` entries replace G's state fields."""
    import tf_pickle as tp

    nets = [tp.network(n, "G_paper" if n != "D" else "D_paper", {"resolution": 8},
                       {"4x4/Dense/weight": np.arange(12, dtype=np.float32).reshape(3, 4),
                        "4x4/Dense/bias": np.ones(4, np.float16)}) for n in ("G", "D", "Gs")]
    nets[0].state.update(state)
    buf = io.BytesIO()
    tp._Pickler(buf, protocol).dump(tuple(nets))
    return buf.getvalue()


def official_pickle(parameters: dict, module_src: str = "", init_kwargs: dict | None = None
                    ) -> bytes:
    """{'G': a persistent record} whose parameters are arrays or official_pickle Calls."""
    import official_pickle as op

    record = op.Record("Generator", init_kwargs or {"z_dim": 4}, module_src)
    record.parameters.update(parameters)
    buf = io.BytesIO()
    op._Pickler(buf).dump({"G": record})
    return buf.getvalue()


def tensor_call(storage_values: np.ndarray, offset, size, stride, blob: bytes | None = None):
    """torch._utils._rebuild_tensor_v2(<legacy storage of storage_values>, offset, size, stride)."""
    import official_pickle as op

    blob = op.legacy_storage_blob(storage_values) if blob is None else blob
    storage = op.Call(op.Global("torch.storage", "_load_from_bytes"), blob)
    return op.Call(op.Global("torch._utils", "_rebuild_tensor_v2"), storage, offset, size,
                   stride, False, collections.OrderedDict())


def storage_blob(numel_in_pid: int, numel_in_header: int, raw: bytes,
                 storage_type: str = "FloatStorage") -> bytes:
    """A legacy torch.save storage blob whose counts may lie."""
    f = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001,
                                                 "little_endian": True}):
        pickle.dump(header, f, protocol=2)
    pid = (text("storage") + glob("torch", storage_type) + text("0") + text("cpu")
           + pickle.BININT + struct.pack("<i", 0) + pickle.NONE)
    f.write(stream(pickle.MARK + pid + pickle.TUPLE + pickle.BINPERSID))
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", numel_in_header) + raw)
    out = bytearray(f.getvalue())
    at = out.index(pickle.BININT + struct.pack("<i", 0))  # the pid's numel
    out[at + 1:at + 5] = struct.pack("<i", min(numel_in_pid, 2**31 - 1))
    if numel_in_pid >= 2**31:  # as LONG1 (8 bytes) instead of BININT
        long1 = pickle.LONG1 + bytes([8]) + struct.pack("<q", numel_in_pid)
        out[at:at + 5] = long1
    return bytes(out)


def torch_zip(data_pkl: bytes, members: dict[str, bytes], deflate: set[str] = frozenset(),
              byteorder: str | None = "little") -> bytes:
    """torch's zip layout: archive/data.pkl, archive/byteorder, archive/data/<key>."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl,
                    zipfile.ZIP_DEFLATED if "data.pkl" in deflate else zipfile.ZIP_STORED)
        if byteorder is not None:
            zf.writestr("archive/byteorder", byteorder)
        for key, raw in members.items():
            zf.writestr(f"archive/data/{key}", raw,
                        zipfile.ZIP_DEFLATED if key in deflate else zipfile.ZIP_STORED)
    return buf.getvalue()


def state_dict_pickle(tensors: dict[str, tuple], storage_type: bytes | None = None) -> bytes:
    """data.pkl of a state dict: name -> (key, numel, offset, size, stride) over storages."""
    items = b""
    for name, (key, numel, offset, size, stride) in tensors.items():
        st = storage_type if storage_type is not None else glob("torch", "FloatStorage")
        pid = (pickle.MARK + text("storage") + st + text(key) + text("cpu")
               + _int(numel) + pickle.TUPLE + pickle.BINPERSID)
        tensor = call(glob("torch._utils", "_rebuild_tensor_v2"), pid, _int(offset),
                      _ints(size), _ints(stride), pickle.NEWFALSE,
                      call(glob("collections", "OrderedDict")))
        items += text(name) + tensor
    return stream(call(glob("collections", "OrderedDict")) + pickle.MARK + items
                  + pickle.SETITEMS)


def _int(n: int) -> bytes:
    if -2**31 <= n < 2**31:
        return pickle.BININT + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def _ints(values) -> bytes:
    return pickle.MARK + b"".join(_int(v) for v in values) + pickle.TUPLE


# ---------------------------------------------------------------------------------
# Hand-made hostile files


def _opcode_cases() -> list[tuple[str, bytes, str]]:
    """(name, stream, expected refusal) valid for every reader."""
    deep_key = pickle.EMPTY_DICT + pickle.EMPTY_TUPLE + pickle.TUPLE1 * 1_000_000 + _int(1)
    shared = pickle.EMPTY_LIST + pickle.BINPUT + b"\x00"
    for k in range(1, 60):  # L_k = [L_k-1, L_k-1]: 2**60 references from 60 lists
        shared += (pickle.POP + pickle.EMPTY_LIST + pickle.MARK + pickle.BINGET + bytes([k - 1])
                   + pickle.BINGET + bytes([k - 1]) + pickle.APPENDS + pickle.BINPUT + bytes([k]))
    return [
        ("deep tuple as a dict key (hash recursion)", stream(deep_key + pickle.SETITEM),
         "nesting deeper than 100"),
        ("deeply nested lists", stream(pickle.EMPTY_LIST * 50_000 + pickle.APPEND * 49_999),
         "nesting deeper than 100"),
        ("deeply nested frozensets", stream((pickle.MARK) * 5000 + pickle.FROZENSET * 5000,
                                            protocol=4), "nesting deeper than 100"),
        ("a list that contains itself", stream(pickle.EMPTY_LIST + pickle.BINPUT + b"\x00"
                                               + pickle.BINGET + b"\x00" + pickle.APPEND),
         "contains itself"),
        ("2**60 shared references", stream(shared), "expand to more than"),
        ("BINBYTES8 of a terabyte", stream(pickle.BINBYTES8 + struct.pack("<Q", 2**40), protocol=4),
         "BINBYTES8 claims 1099511627776 bytes"),
        ("BINUNICODE8 of a terabyte", stream(b"\x8d" + struct.pack("<Q", 2**40), protocol=4),
         "BINUNICODE8 claims"),
        ("BYTEARRAY8 of a terabyte", stream(b"\x96" + struct.pack("<Q", 2**40), protocol=5),
         "BYTEARRAY8 claims"),
        ("BINBYTES of 4 GiB", stream(pickle.BINBYTES + struct.pack("<I", 2**32 - 1), protocol=3),
         "BINBYTES claims"),
        ("LONG4 of 2 GiB", stream(pickle.LONG4 + struct.pack("<i", 2**31 - 1)), "LONG4 claims"),
        ("BINSTRING of negative length", stream(pickle.BINSTRING + struct.pack("<i", -5)),
         "BINSTRING claims -5 bytes"),
        ("FRAME of a petabyte", proto(4) + pickle.FRAME + struct.pack("<Q", 2**50)
         + pickle.NONE + pickle.STOP, "FRAME claims"),
        ("LONG_BINPUT at index 2**32-1 (memo growth)",
         stream(pickle.NONE + pickle.LONG_BINPUT + b"\xff\xff\xff\xff"), "is beyond the"),
        ("PUT at index 10**12", stream(pickle.NONE + pickle.PUT + b"1000000000000\n"),
         "is beyond the"),
        ("BINGET of a missing memo index", stream(pickle.BINGET + b"\x07"), "never stored"),
        ("LONG_BINGET of a missing memo index", stream(pickle.LONG_BINGET + b"\x00\x00\x01\x00"),
         "never stored"),
        ("TUPLE without MARK", stream(pickle.NONE + pickle.TUPLE), "without a matching MARK"),
        ("POP_MARK without MARK", stream(pickle.NONE + pickle.POP_MARK + pickle.NONE),
         "without a matching MARK"),
        ("APPENDS without a list", stream(pickle.MARK + pickle.NONE + pickle.APPENDS),
         "pops more than"),
        ("unclosed MARK", stream(pickle.MARK + pickle.NONE), "MARKs"),
        ("STOP on an empty stack", stream(b""), "pops more than"),
        ("truncated stream", stream(pickle.EMPTY_DICT + text("G") + pickle.NONE)[:-5],
         "truncated"),
        ("truncated argument", proto(2) + pickle.BININT, "truncated in BININT's argument"),
        ("unknown opcode", stream(b"\xff"), "unknown pickle opcode 0xff"),
        ("out-of-band buffer", stream(b"\x97", protocol=5), "out-of-band buffer"),
        ("EXT2", stream(pickle.EXT2 + b"\x01\x02"), "extension-registry"),
        ("EXT4", stream(pickle.EXT4 + b"\x01\x02\x03\x04"), "extension-registry"),
        ("persistent id (PERSID) outside a storage", stream(pickle.PERSID + b"touch\n"),
         "persistent id"),
        ("persistent id (BINPERSID) outside a storage",
         stream(text("storage") + pickle.BINPERSID), "persistent id"),
        ("missing class via NEWOBJ", stream(glob("training.networks", "Generator")
                                            + pickle.EMPTY_TUPLE + pickle.NEWOBJ),
         r"refusing to load training\.networks\.Generator"),
        ("missing class via NEWOBJ_EX", stream(stack_global("torch_utils.persistence",
                                                            "Persistent") + pickle.EMPTY_TUPLE
                                               + pickle.EMPTY_DICT + pickle.NEWOBJ_EX,
                                               protocol=4), "refusing to load"),
        ("persistence carrying code", stream(call(glob("torch_utils.persistence",
                                                       "_reconstruct_persistent_class"),
                                                  text("import os"))), "refusing to load"),
        ("name with a newline", stream(text("os\nx") + text("system") + pickle.STACK_GLOBAL,
                                       protocol=4), r"refusing to load 'os\\nx'\.system"),
    ]


def hostile_cases(marker_dir: Path) -> list[Case]:
    """Every hand-made case for its reader(s), with the refusal it must meet."""
    import official_pickle as op

    out = [Case(f"{reader}: {name}", reader, data, expect)
           for name, data, expect in _opcode_cases() for reader in ("official", "tf", "torch")]
    ones = np.ones(4, np.float32)
    terabytes = tensor_call(np.ones(1, np.float32), 0, (2**20, 2**20), (0, 0))
    official = {
        "tensor of 4 TiB by stride 0": ({"w": terabytes}, "more than the file could hold"),
        "tensor past its storage": ({"w": tensor_call(ones, 2, (3,), (1,))},
                                    "runs past its storage"),
        "negative stride": ({"w": tensor_call(ones, 3, (4,), (-1,))}, "non-negative integers"),
        "negative offset": ({"w": tensor_call(ones, -4, (4,), (1,))}, "non-negative integers"),
        "size whose product overflows int64": ({"w": tensor_call(ones, 0, (2**61, 2**61),
                                                                 (1, 1))}, "runs past"),
        "float size": ({"w": tensor_call(ones, 0, (2.5,), (1,))}, "non-negative integers"),
        "100 dimensions": ({"w": tensor_call(ones, 0, (1,) * 100, (1,) * 100)},
                           "at most 32"),
        "storage claiming a terabyte": ({"w": tensor_call(ones, 0, (4,), (1,), storage_blob(
            2**38, 2**38, ones.tobytes()))}, "holds 274877906944"),
        "storage shorter than its count": ({"w": tensor_call(ones, 0, (4,), (1,), storage_blob(
            8, 8, ones.tobytes()))}, "8 elements"),
        "storage of an unknown type": ({"w": tensor_call(ones, 0, (4,), (1,), storage_blob(
            4, 4, ones.tobytes(), "ComplexFloatStorage"))}, "ComplexFloatStorage"),
        "storage blob that is not bytes": ({"w": op.Call(op.Global("torch._utils",
                                                                   "_rebuild_tensor_v2"),
                                                         op.Call(op.Global("torch.storage",
                                                                           "_load_from_bytes"),
                                                                 "text"), 0, (1,), (1,))},
                                           "expected bytes"),
        "parameter that is not a tensor": ({"w": [1.0, 2.0]}, "expected a tensor"),
    }
    for name, (params, expect) in official.items():
        out.append(Case(f"official: {name}", "official", official_pickle(params), expect))
    marker = str(marker_dir / "module_src")
    out.append(Case("official: module_src never runs", "official",
                    official_pickle({"w": ones}, f"open({marker!r}, 'w')\n"), None, marker))

    tf = _tf_cases(str(marker_dir / "build_module_src"))
    out += [Case(f"tf: {name}", "tf", data, expect) for name, (data, expect) in tf.items()]
    out += [Case(f"torch: {name}", "torch", data, expect) for name, (data, expect)
            in _torch_cases().items()]
    return out


def _array(shape_and_dtype: bytes, raw: bytes) -> bytes:
    """numpy's own pickle of an array: _reconstruct(...) then BUILD (1, shape, dtype, f, raw)."""
    empty = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"),
                 _ints((0,)), pickle.SHORT_BINBYTES + b"\x01b")
    return (empty + pickle.MARK + _int(1) + shape_and_dtype + pickle.NEWFALSE
            + pickle.BINBYTES + struct.pack("<I", len(raw)) + raw + pickle.TUPLE + pickle.BUILD)


def _dtype(code: str, state: bytes | None = None) -> bytes:
    state = state if state is not None else (
        pickle.MARK + _int(3) + text("<") + pickle.NONE * 3 + _int(-1) * 2 + _int(0) + pickle.TUPLE)
    return call(glob("numpy", "dtype"), text(code), pickle.NEWFALSE, pickle.NEWTRUE) + (
        state + pickle.BUILD)


def _tf_cases(marker: str) -> dict[str, tuple[bytes, str | None]]:
    net = glob("dnnlib.tflib.network", "Network") + pickle.EMPTY_TUPLE + pickle.NEWOBJ

    def with_variable(value: bytes) -> bytes:
        state = (pickle.EMPTY_DICT + pickle.MARK + text("version") + _int(3) + text("name")
                 + text("G") + text("static_kwargs") + pickle.EMPTY_DICT + text("build_func_name")
                 + text("G_paper") + text("variables") + pickle.MARK + pickle.MARK + text("w")
                 + value + pickle.TUPLE + pickle.LIST + pickle.SETITEMS)
        return stream(pickle.MARK + (net + state + pickle.BUILD) * 3 + pickle.TUPLE)

    flags = (pickle.MARK + _int(3) + text("<") + pickle.NONE * 3 + _int(-1) * 2 + _int(63)
             + pickle.TUPLE)
    f4 = _dtype("f4")
    cycle = (pickle.MARK + net + pickle.BINPUT + b"\x00" + pickle.EMPTY_DICT + text("components")
             + pickle.EMPTY_DICT + text("self") + pickle.BINGET + b"\x00" + pickle.SETITEM
             + pickle.SETITEM + pickle.BUILD + pickle.BINGET + b"\x00" + pickle.BINGET + b"\x00"
             + pickle.TUPLE)
    def set_attribute(cls: bytes) -> bytes:  # BUILD's (None, slotstate) form: setattr
        return stream(cls + pickle.NONE + pickle.EMPTY_DICT + text("validate")
                      + glob("builtins", "set") + pickle.SETITEM + pickle.TUPLE2 + pickle.BUILD)

    return {
        "array of 2**80 bytes over 16": (with_variable(_array(_ints((2**40, 2**40)) + f4,
                                                              b"\0" * 16)),
                                         "needs 4835703278458516698824704 bytes"),
        "array shape that overflows": (with_variable(_array(_ints((2**62, 2**62, 4)) + f4, b"")),
                                       "numpy array shape"),
        "_reconstruct of a huge array": (with_variable(call(
            glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"),
            _ints((2**40,)), pickle.SHORT_BINBYTES + b"\x01b")), "refusing numpy _reconstruct"),
        "ndarray called directly": (with_variable(call(glob("numpy", "ndarray"),
                                                       _ints((2**40,)))), "not callable"),
        "object dtype": (with_variable(_array(_ints((1,)) + _dtype("O"), b"\0" * 8)),
                         "refusing numpy dtype 'O'"),
        "structured dtype": (with_variable(_array(_ints((1,)) + _dtype("f4,f4"), b"\0" * 8)),
                             "refusing numpy dtype"),
        "dtype state flagging objects": (with_variable(_array(_ints((2,)) + _dtype("f8", flags),
                                                              b"\0" * 16)),
                                         "refusing numpy dtype state"),
        "unknown dtype string": (with_variable(_array(_ints((1,)) + _dtype("float99"), b"\0")),
                                 "not understood"),
        "a network that is its own component": (stream(cycle), "contains itself"),
        "BUILD setting a class attribute": (set_attribute(glob("dnnlib.util", "EasyDict")),
                                            r"tries to set _EasyDict\.validate"),
        "BUILD calling a class's __setstate__": (set_attribute(glob("dnnlib.tflib.network",
                                                                    "Network")), "TypeError"),
        "BUILD setting a builtin class attribute": (set_attribute(glob("collections",
                                                                       "OrderedDict")),
                                                    "immutable type"),
        "BUILD on an allowed function": (stream(glob("copy_reg", "_reconstructor")
                                                + pickle.EMPTY_DICT + pickle.BUILD),
                                         "tries to set the state of a function"),
        "state set twice": (stream(net + pickle.EMPTY_DICT + pickle.BUILD + pickle.EMPTY_DICT
                                   + pickle.BUILD), "set twice"),
        "build source never runs": (tf_network_pickle(2, build_module_src=(
            f"open({marker!r}, 'w')\ndef G_paper(): pass\n")), None),
    }


def _torch_cases() -> dict[str, tuple[bytes, str]]:
    ones = np.ones(4, np.float32).tobytes()
    one = {"w": ("0", 4, 0, (4,), (1,))}
    zeros = bytes(8 * 2**20)
    return {
        "storage missing from the zip": (torch_zip(state_dict_pickle(one), {}),
                                         "missing from the zip"),
        "data.pkl naming a storage key not in the zip": (torch_zip(state_dict_pickle(
            {"w": ("7", 4, 0, (4,), (1,))}), {"0": ones}), "storage 7 is missing"),
        "storage member shorter than its tensor": (torch_zip(state_dict_pickle(
            {"w": ("0", 400, 0, (4,), (1,))}), {"0": ones}), "needs 1600 bytes"),
        "zip bomb storage": (torch_zip(state_dict_pickle({"w": ("0", 2**21, 0, (4,), (1,))}),
                                       {"0": zeros}, deflate={"0"}), "zip bomb"),
        "zip bomb data.pkl": (torch_zip(state_dict_pickle(one) + zeros, {"0": ones},
                                        deflate={"data.pkl"}), "zip bomb"),
        "unknown byte order": (torch_zip(state_dict_pickle(one), {"0": ones}, byteorder="middle"),
                               "byteorder is 'middle'"),
        "unknown storage type": (torch_zip(state_dict_pickle(one, glob(
            "torch", "ComplexFloatStorage")), {"0": ones}), "unknown storage type"),
        "storage type that is not a type": (torch_zip(state_dict_pickle(one, text("float32")),
                                                      {"0": ones}), "unexpected storage type"),
        "tensor of 4 TiB by stride 0": (torch_zip(state_dict_pickle(
            {"w": ("0", 4, 0, (2**20, 2**20), (0, 0))}), {"0": ones}),
            "more than the file could hold"),
        "tensor past its storage": (torch_zip(state_dict_pickle(
            {"w": ("0", 4, 3, (2,), (1,))}), {"0": ones}), "runs past its storage"),
        "storage count of 2**70": (torch_zip(state_dict_pickle(
            {"w": ("0", 2**70, 0, (4,), (1,))}), {"0": ones}), "expected a count"),
        "no data.pkl": (_zip({"archive/x": b""}), "exactly one <archive>/data.pkl"),
        "damaged member (CRC)": (_flip_stored(torch_zip(state_dict_pickle(one), {"0": ones}),
                                              ones), "BadZipFile"),
        "legacy storage past the file": (_legacy({"w": ("0", 2**40, 0, (4,), (1,))}, 2**40, ones),
                                         "holds 1099511627776"),
        "legacy storage list naming an unknown key": (_legacy(one, 4, ones, order=["9"]),
                                                      "storage 9 is listed"),
    }


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def _flip_stored(archive: bytes, raw: bytes) -> bytes:
    out = bytearray(archive)
    out[archive.index(raw) + 1] ^= 0xFF
    return bytes(out)


def _legacy(tensors: dict, numel: int, raw: bytes, order=("0",)) -> bytes:
    """A legacy torch.save state dict (magic, protocol, sys info, data, keys, storages)."""
    f = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001,
                                                 "little_endian": True}):
        pickle.dump(header, f, protocol=2)
    f.write(state_dict_pickle(tensors))
    pickle.dump(list(order), f, protocol=2)
    f.write(struct.pack("<q", numel) + raw)
    return f.getvalue()


# ---------------------------------------------------------------------------------
# Mutations of valid files


def opcode_offsets(data: bytes) -> list[int]:
    """Offsets of the opcodes of the pickle at data[0:] and of the pickles in its byte
    arguments (torch's storage blobs), where mutations do the most damage."""
    out = []
    try:
        for _op, arg, pos in pickletools.genops(data):
            out.append(pos)
            if isinstance(arg, bytes) and len(arg) > 64:
                start = data.index(arg, pos)
                inner = io.BytesIO(arg)
                for _ in range(5):  # a legacy blob: five pickles, then raw data
                    base = inner.tell()
                    for _op, _arg, p in pickletools.genops(inner):
                        out.append(start + base + p)
    except Exception:  # noqa: BLE001 (a blob that is not five pickles)
        pass
    return out


_OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]


def mutate(data: bytes, rng: random.Random, offsets: list[int]) -> tuple[str, bytes]:
    """One random mutation of `data`: (what was done, the result)."""
    kind = rng.choice(["truncate", "flip", "flip", "substitute", "substitute", "insert",
                       "duplicate", "delete"])
    at = rng.choice(offsets) if offsets and rng.random() < 0.8 else rng.randrange(len(data))
    if kind == "truncate":
        at = rng.randrange(len(data))
        return f"truncate at {at}", data[:at]
    if kind == "flip":
        at = min(at + rng.choice([0, 0, 1, 2, 3, 4]), len(data) - 1)
        bit = 1 << rng.randrange(8)
        return f"flip bit {bit} at {at}", data[:at] + bytes([data[at] ^ bit]) + data[at + 1:]
    if kind == "substitute":
        code = rng.choice(_OPCODES)
        return f"opcode {code!r} at {at}", data[:at] + code + data[at + 1:]
    if kind == "insert":
        code = rng.choice(_OPCODES) + bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
        return f"insert {code!r} at {at}", data[:at] + code + data[at:]
    end = min(len(data), at + rng.randrange(1, 64))
    if kind == "duplicate":
        return f"duplicate {at}:{end}", data[:end] + data[at:end] + data[end:]
    return f"delete {at}:{end}", data[:at] + data[end:]


def mutate_zip(archive: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Mutates the data.pkl of a torch zip (re-zipped, so the pickle reader sees it) or,
    one time in four, the archive's raw bytes."""
    if rng.random() < 0.25:
        return mutate(archive, rng, [])
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    name = next(n for n in members if n.endswith("data.pkl"))
    what, members[name] = mutate(members[name], rng, opcode_offsets(members[name]))
    return f"data.pkl: {what}", _zip(members)


# ---------------------------------------------------------------------------------
# The reading process


def _readers():
    from stylegan_jax.convert import pickle_reader as pr
    from stylegan_jax.metrics import torch_weights as tw

    def official(path):
        pr.first_global(path)  # as the CLI does first
        data = pr.load_official_pickle(path)
        return {k: len(v.state_dict()) for k, v in data.items()
                if isinstance(v, pr.PersistentObject)}

    def tf(path):
        pr.first_global(path)
        return [len(net.variables()) for net in pr.load_tf_pickle(path)]

    def torch(path):
        return {k: list(v.shape) for k, v in tw.load_state_dict(path).items()}

    return {"official": official, "tf": tf, "torch": torch}, pr


def _integrity(pr) -> list:
    """What a pickle must not be able to change in the reader's process."""
    from stylegan_jax.metrics import torch_weights as tw

    return [id(v) for v in (*vars(pr.TFNetwork).values(), *vars(pr._DnnlibNetwork).values(),
                            *vars(pr._EasyDict).values())] + [
        repr(sorted(vars(s).items())) for s in (*pr._STORAGE_NAMES.values(),
                                                 *(v for v in tw._SAFE.values()
                                                   if isinstance(v, tw._StorageType)))]


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main(manifest: str, results: str) -> int:
    import copyreg
    import resource

    readers, pr = _readers()
    copyreg.add_extension("builtins", "open", EXT_CODE)
    before = _integrity(pr)
    limit = _vm_size() + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cases = json.loads(Path(manifest).read_text())
    with open(results, "w") as out:
        for case in cases:
            t0 = time.perf_counter()
            row = {"name": case["name"]}
            try:
                row.update(status="ok", value=repr(readers[case["reader"]](case["path"]))[:200])
            except BaseException as e:  # noqa: BLE001 (reported, judged by the test)
                row.update(status=type(e).__name__, message=str(e),
                           value_error=isinstance(e, ValueError),
                           pickle_file_error=isinstance(e, pr.PickleFileError))
            row["seconds"] = time.perf_counter() - t0
            out.write(json.dumps(row) + "\n")
            out.flush()
        out.write(json.dumps({"integrity": _integrity(pr) == before}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
