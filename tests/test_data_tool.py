"""The dataset tool end to end on images the tests write: round trips, levels, labels, TFDS
(through tfds.testing.mock_data), every bad input, and atomic completion.

References are independent of the code under test: tensorflow's own TFRecord reader and
protobuf, scikit-image's block means, PIL's resize (called here, never through the project's
resize), plain numpy slicing.
"""

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from skimage.transform import downscale_local_mean

from stylegan_jax.data import dataset_tool, shards
from stylegan_jax.data.shards import MANIFEST, example_prefix, read_manifest

RNG = np.random.default_rng(0)


def png_bytes(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    image = PIL.Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def png16_rgb(h: int, w: int) -> bytes:
    """A 48-bit RGB PNG written by hand (PIL opens it as 8-bit RGB unless told otherwise)."""
    rows = b"".join(b"\x00" + np.full((w, 3), 1000, ">u2").tobytes() for _ in range(h))

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_folder(root: Path, images: dict[str, np.ndarray | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in images.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else png_bytes(content))
    return root


def tool(*argv) -> int:
    return dataset_tool.main([*map(str, argv), "--no-progress", "--workers", "2"])


def read_with_tensorflow(root: Path, level: int, channels: int) -> np.ndarray:
    """Every image of a level (its shorter side), parsed by tensorflow's TFRecord reader and
    protobuf."""
    import tensorflow as tf

    manifest = read_manifest(root)
    ah, aw = manifest["aspect"]
    files = [str(root / s["file"]) for s in manifest["levels"][str(level)]["shards"]]
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    images = []
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        raw = tf.io.parse_single_example(record, spec)["image"]
        pixels = tf.io.decode_raw(raw, tf.uint8)
        images.append(tf.reshape(pixels, [level * ah, level * aw, channels]))
    return np.stack(images)


def box_reference(images: np.ndarray, factor: int) -> np.ndarray:
    """Exact block means rounded once: the tool's lower levels (not Pillow's BOX)."""
    return np.rint(downscale_local_mean(images, (1, factor, factor, 1))).astype(np.uint8)


PIL_FILTERS = {"box": PIL.Image.Resampling.BOX, "lanczos": PIL.Image.Resampling.LANCZOS}


def pil_resize(images: np.ndarray, width: int, height: int, name: str = "lanczos") -> np.ndarray:
    """Pillow's resize of each uint8 HWC image, as the official dataset tool resizes."""
    return np.stack(
        [
            np.asarray(PIL.Image.fromarray(x).resize((width, height), PIL_FILTERS[name]))
            for x in images
        ]
    )


@pytest.fixture(scope="module")
def faces32():
    return RNG.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)


def test_example_prefix_is_tensorflows_serialization():
    import tensorflow as tf

    for n in (0, 5, 127, 128, 16383, 16384, 3 * 1024 * 1024):
        payload = bytes(RNG.integers(0, 256, n, dtype=np.uint8))
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[payload]))
        example = tf.train.Example(features=tf.train.Features(feature={"image": feature}))
        assert example.SerializeToString() == example_prefix(n) + payload


def test_round_trip_folder_levels_and_tensorflow_reader(tmp_path, faces32, capsys):
    files = {f"b/{i:02d}.png": img for i, img in enumerate(faces32)}
    files["LICENSE.txt"] = b"not an image"
    src = write_folder(tmp_path / "src", files)
    dest = tmp_path / "out"
    assert (
        tool(
            "--source",
            src,
            "--dest",
            dest,
            "--resolution",
            16,
            "--min-resolution",
            4,
            "--shard-mb",
            1,
        )
        == 0
    )
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["count"] == 7 and manifest["resolution"] == 16 and manifest["channels"] == 3
    assert manifest["labels"] is None and manifest["ignored"] == ["LICENSE.txt"]
    assert sorted(manifest["levels"]) == ["16", "4", "8"]
    assert manifest["args"]["resolution"] == 16
    assert manifest["resize_filter"] == manifest["args"]["resize_filter"] == "lanczos"  # default
    top = read_with_tensorflow(dest, 16, 3)
    np.testing.assert_array_equal(top, pil_resize(faces32, 16, 16, "lanczos"))
    for level in (8, 4):  # the exact box average of the stored top level, rounded once
        got = read_with_tensorflow(dest, level, 3)
        np.testing.assert_array_equal(got, box_reference(top, 16 // level))
    out = capsys.readouterr().out
    assert "wrote 7 images" in out and "ignored 1" in out


def test_small_shards_zip_grayscale_and_lanczos(tmp_path, faces32):
    zpath = tmp_path / "src.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for i, img in enumerate(faces32):
            z.writestr(f"x/{i}.png", png_bytes(img))
    dest = tmp_path / "out"
    dataset_tool.build_dataset(
        str(zpath), str(dest), 16, channels=1, resize_filter="lanczos", shard_mb=0, workers=1
    )
    manifest = read_manifest(dest)
    assert [s["count"] for s in manifest["levels"]["16"]["shards"]] == [1] * 7
    assert manifest["resize_filter"] == "lanczos"
    expected = [
        np.asarray(
            PIL.Image.fromarray(img).convert("L").resize((16, 16), PIL.Image.Resampling.LANCZOS)
        )
        for img in faces32
    ]
    np.testing.assert_array_equal(read_with_tensorflow(dest, 16, 1)[..., 0], np.stack(expected))


@pytest.mark.parametrize("name", ["lanczos", "box"])
def test_crop_transforms_resize_as_pillow(tmp_path, name):
    tall = RNG.integers(0, 256, (48, 32, 3), dtype=np.uint8)  # h x w
    wide = RNG.integers(0, 256, (24, 64, 3), dtype=np.uint8)
    src = write_folder(tmp_path / "tall", {"a.png": tall})
    assert (
        tool(
            "--source",
            src,
            "--dest",
            tmp_path / "cc",
            "--resolution",
            16,
            "--transform",
            "center-crop",
            "--resize-filter",
            name,
        )
        == 0
    )
    assert read_manifest(tmp_path / "cc")["resize_filter"] == name
    np.testing.assert_array_equal(
        read_with_tensorflow(tmp_path / "cc", 16, 3), pil_resize(tall[None, 8:40], 16, 16, name)
    )
    # center-crop-wide to 16 wide x 8 high: the 2:1 centre of a 64x24 image is 48x24.
    src = write_folder(tmp_path / "wide", {"a.png": wide})
    dataset_tool.build_dataset(
        str(src),
        str(tmp_path / "ccw"),
        16,
        transform="center-crop-wide",
        wide_height=8,
        resize_filter=name,
    )
    assert read_manifest(tmp_path / "ccw")["resize_filter"] == name
    got = read_with_tensorflow(tmp_path / "ccw", 16, 3)[0]
    assert not got[:4].any() and not got[12:].any()
    np.testing.assert_array_equal(got[4:12], pil_resize(wide[None, :, 8:56], 16, 8, name)[0])


def test_box_is_pillows_box_not_the_exact_block_mean(tmp_path, faces32):
    """Integer factors too: Pillow rounds after each of its two passes, so its BOX differs
    from the exact block mean; the tool writes Pillow's, as the official tool."""
    src = write_folder(tmp_path / "src", {f"{i}.png": img for i, img in enumerate(faces32)})
    assert (
        tool("--source", src, "--dest", tmp_path / "int", "--resolution", 16, "--filter", "box")
        == 0
    )  # --filter: the earlier name, still accepted
    got = read_with_tensorflow(tmp_path / "int", 16, 3)
    np.testing.assert_array_equal(got, pil_resize(faces32, 16, 16, "box"))
    assert not np.array_equal(got, box_reference(faces32, 2))  # the two do differ here
    manifest = read_manifest(tmp_path / "int")
    assert manifest["resize_filter"] == manifest["args"]["resize_filter"] == "box"
    # A non-integer factor (24 -> 16) equals Pillow's BOX as well.
    src = write_folder(
        tmp_path / "src24", {f"{i}.png": img[:24, :24] for i, img in enumerate(faces32)}
    )
    assert (
        tool(
            "--source",
            src,
            "--dest",
            tmp_path / "frac",
            "--resolution",
            16,
            "--resize-filter",
            "box",
        )
        == 0
    )
    np.testing.assert_array_equal(
        read_with_tensorflow(tmp_path / "frac", 16, 3),
        pil_resize(faces32[:, :24, :24], 16, 16, "box"),
    )


def test_a_dataset_without_resizing_still_records_the_filter(tmp_path, faces32):
    src = write_folder(tmp_path / "src", {"a.png": faces32[0][:16, :16]})
    assert (
        tool(
            "--source",
            src,
            "--dest",
            tmp_path / "out",
            "--resolution",
            16,
            "--resize-filter",
            "box",
        )
        == 0
    )
    assert read_manifest(tmp_path / "out")["resize_filter"] == "box"
    np.testing.assert_array_equal(
        read_with_tensorflow(tmp_path / "out", 16, 3)[0], faces32[0][:16, :16]
    )
    with pytest.raises(shards.DatasetError, match="--resize-filter must be one of .*'cubic'"):
        dataset_tool.build_dataset(str(src), str(tmp_path / "bad"), 16, resize_filter="cubic")


def test_help_names_the_resize_filter_and_its_default(capsys):
    with pytest.raises(SystemExit):
        dataset_tool.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--resize-filter" in out and "--filter" in out and "default lanczos" in out


@pytest.mark.parametrize("args", [None, {}, {"filter": "box"}])
def test_an_old_manifest_without_resize_filter_loads(tmp_path, faces32, args):
    from stylegan_jax.data.sources import SourceConfig, open_indexed

    src = write_folder(tmp_path / "src", {"a.png": faces32[0]})
    dataset_tool.build_dataset(str(src), str(tmp_path / "out"), 16, resize_filter="box")
    file = tmp_path / "out" / MANIFEST
    old = json.loads(file.read_text())
    del old["resize_filter"]
    if args is None:
        del old["args"]
    else:
        old["args"] = args
    file.write_text(json.dumps(old))
    # Old tools recorded the command line's --filter in args; without it, unknown (None).
    assert read_manifest(tmp_path / "out")["resize_filter"] == (args or {}).get("filter")
    assert open_indexed(SourceConfig(kind="tfrecord", path=str(tmp_path / "out"))).count == 1
    old["resize_filter"] = 3
    file.write_text(json.dumps(old))
    with pytest.raises(shards.DatasetError, match=r"manifest.json: field 'resize_filter'.* 3"):
        read_manifest(tmp_path / "out")


def test_labels_from_dataset_json(tmp_path):
    colours = {
        f"c{k}/{i}.png": np.full((16, 16, 3), 40 * k, np.uint8) for k in range(3) for i in range(2)
    }
    src = write_folder(tmp_path / "src", colours)
    labels = [[name, int(name[1])] for name in colours]
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    dataset_tool.build_dataset(str(src), str(tmp_path / "out"), 16)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["num_classes"] == 3 and manifest["ignored"] == []
    images = read_with_tensorflow(tmp_path / "out", 16, 3)
    np.testing.assert_array_equal(images[:, 0, 0, 0], 40 * np.asarray(manifest["labels"]))


def test_tfds_source_with_labels_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        reference = list(tfds.load("mnist", split="train").as_numpy_iterator())
        assert (
            tool(
                "--source",
                "tfds:mnist",
                "--dest",
                tmp_path / "m",
                "--resolution",
                16,
                "--channels",
                1,
                "--label-key",
                "label",
            )
            == 0
        )
    manifest = read_manifest(tmp_path / "m")
    assert manifest["count"] == 6 and manifest["num_classes"] == 10
    assert manifest["labels"] == [int(ex["label"]) for ex in reference]
    expected = pil_resize(np.stack([ex["image"][..., 0] for ex in reference]), 16, 16)
    np.testing.assert_array_equal(read_with_tensorflow(tmp_path / "m", 16, 1)[..., 0], expected)


def _truncated(img):
    data = png_bytes(img)
    return data[: len(data) // 2]


def _corrupt(img):
    data = bytearray(png_bytes(img))
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    return bytes(data)


BAD_FILES = {  # name -> (content, words the message must contain)
    "corrupt.png": (lambda g: _corrupt(g), "corrupt"),
    "truncated.png": (lambda g: _truncated(g), "truncated"),
    "text.png": (lambda g: b"hello, not pixels", "not an image"),
    "cmyk.jpg": (lambda g: png_bytes(g, "JPEG", "CMYK"), "CMYK"),
    "rgba.png": (lambda g: png_bytes(g, mode="RGBA"), "alpha"),
    "palette.png": (lambda g: png_bytes(g, mode="P"), "palette"),
    "gray16.png": (lambda g: png_bytes(np.zeros((32, 32), np.uint16)), "16-bit"),
    "rgb16.png": (lambda g: png16_rgb(32, 32), "16-bit"),
    "small.png": (lambda g: png_bytes(g[:8, :8]), "smaller than 16x16"),
    "oblong.png": (lambda g: png_bytes(g[:, :24]), "not square"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_each_bad_file_stops_the_run_naming_it(tmp_path, faces32, capsys, bad):
    content, words = BAD_FILES[bad]
    src = write_folder(tmp_path / "src", {"good.png": faces32[0], bad: content(faces32[1])})
    assert tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16) == 1
    err = capsys.readouterr().err
    assert str(src / bad) in err and words in err and "--skip-bad" in err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no partial directory left


def test_skip_bad_skips_and_counts_every_bad_file(tmp_path, faces32, capsys):
    files = {name: content(faces32[1]) for name, (content, _) in BAD_FILES.items()}
    files.update({"good0.png": faces32[0], "good1.png": faces32[2]})
    src = write_folder(tmp_path / "src", files)
    assert tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16, "--skip-bad") == 0
    manifest = read_manifest(tmp_path / "out")
    assert manifest["count"] == 2
    skipped = {Path(s["file"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == set(BAD_FILES)
    for name, (_, words) in BAD_FILES.items():
        assert words in skipped[name]
    np.testing.assert_array_equal(
        read_with_tensorflow(tmp_path / "out", 16, 3), pil_resize(faces32[[0, 2]], 16, 16)
    )
    assert f"skipped {len(BAD_FILES)} bad files" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["empty", "only-text", "all-bad"])
def test_empty_sources(tmp_path, capsys, case):
    files = {"empty": {}, "only-text": {"a.txt": b"x"}, "all-bad": {"a.png": b"x"}}[case]
    src = write_folder(tmp_path / "src", files)
    extra = ["--skip-bad"] if case == "all-bad" else []
    assert tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16, *extra) == 1
    err = capsys.readouterr().err
    assert str(src) in err and ("no images found" in err or "all 1 images were bad" in err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "case", ["unlabelled-image", "label-without-image", "malformed", "negative", "duplicate"]
)
def test_labels_that_do_not_match(tmp_path, faces32, capsys, case):
    src = write_folder(tmp_path / "src", {"a.png": faces32[0], "b.png": faces32[1]})
    labels = {
        "unlabelled-image": [["a.png", 0]],
        "label-without-image": [["a.png", 0], ["b.png", 1], ["c.png", 2]],
        "malformed": [["a.png", "cat"], ["b.png", 1]],
        "negative": [["a.png", -1], ["b.png", 1]],
        "duplicate": [["a.png", 0], ["a.png", 1], ["b.png", 1]],
    }[case]
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    assert tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16) == 1
    err = capsys.readouterr().err
    named = {"unlabelled-image": str(src / "b.png"), "label-without-image": "c.png"}
    assert named.get(case, "dataset.json") in err and "label" in err
    if case in ("unlabelled-image", "label-without-image"):  # --skip-bad gets past these two
        assert (
            tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16, "--skip-bad") == 0
        )
        manifest = read_manifest(tmp_path / "out")
        assert manifest["labels"] == ([0] if case == "unlabelled-image" else [0, 1])
        assert manifest["unmatched_labels"] == ([] if case == "unlabelled-image" else ["c.png"])


def test_destination_that_holds_a_dataset_or_files(tmp_path, faces32, capsys):
    src = write_folder(tmp_path / "src", {"a.png": faces32[0]})
    assert tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16) == 0
    before = (tmp_path / "out" / MANIFEST).read_bytes()
    assert tool("--source", src, "--dest", tmp_path / "out", "--resolution", 16) == 1
    assert "already holds a dataset" in capsys.readouterr().err
    assert (tmp_path / "out" / MANIFEST).read_bytes() == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert tool("--source", src, "--dest", tmp_path / "busy", "--resolution", 16) == 1
    assert "not empty" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # an empty directory is fine
    assert tool("--source", src, "--dest", tmp_path / "empty", "--resolution", 16) == 0


def test_interrupted_run_leaves_nothing_that_looks_finished(tmp_path, faces32, monkeypatch):
    src = write_folder(tmp_path / "src", {f"{i}.png": img for i, img in enumerate(faces32)})
    dest = tmp_path / "out"
    original, written = shards.LevelWriter.write, []

    def interrupt_midway(self, image):
        original(self, image)
        written.append(1)
        # Mid-run: nothing at dest, and no manifest anywhere yet.
        assert not dest.exists() and not list(tmp_path.rglob(MANIFEST))
        if len(written) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(shards.LevelWriter, "write", interrupt_midway)
    with pytest.raises(KeyboardInterrupt):
        dataset_tool.build_dataset(str(src), str(dest), 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_damaged_dataset_is_refused_by_name(tmp_path, faces32):
    from stylegan_jax.data.pipeline import make_pipeline

    src = write_folder(tmp_path / "src", {f"{i}.png": img for i, img in enumerate(faces32)})
    dataset_tool.build_dataset(str(src), str(tmp_path / "out"), 16)
    shard = tmp_path / "out" / "r16" / "shard-00000.tfrecord"
    data = bytearray(shard.read_bytes())
    record = len(data) // 7
    data[3 * record + 20] ^= 0xFF  # inside the Example prefix of record 3
    shard.write_bytes(bytes(data))
    pipe = make_pipeline(
        {"kind": "tfrecord", "path": str(tmp_path / "out")}, 7, process_index=0, process_count=1
    )
    with pytest.raises(shards.DatasetError, match=r"shard-00000.tfrecord: record 3 is corrupt"):
        next(pipe)
    shard.write_bytes(bytes(data[:-5]))
    with pytest.raises(shards.DatasetError, match=r"shard-00000.tfrecord.*truncated"):
        make_pipeline(
            {"kind": "tfrecord", "path": str(tmp_path / "out")}, 7, process_index=0, process_count=1
        )
    with pytest.raises(shards.DatasetError, match="no manifest.json"):
        make_pipeline(
            {"kind": "tfrecord", "path": str(tmp_path / "src")}, 7, process_index=0, process_count=1
        )
