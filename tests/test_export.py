"""`stylegan-jax export`: every family's exported program gives `generate`'s images, an
artifact runs in a process that never imports this package or Flax, and bad input is one
clear line with nothing half-written.

References: `generate_images` / `images_from_ws` and the PNG files of `stylegan-jax
generate` (the tools every user already trusts), never the export code's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image
from tiny_generators import progan_conditional, stylegan3_conditional, stylegan_v1, visible

from stylegan_jax import cli, pretrained
from stylegan_jax.export import artifact, formats, program, savedmodel, stablehlo
from stylegan_jax.generate import generate_images, images_from_ws, ws_for_seeds
from stylegan_jax.models.registry import Network, random_generator
from stylegan_jax.models.sampling import labels_for, latents_for_seeds
from stylegan_jax.serve.engine import Engine
from stylegan_jax.serve.exported import ExportedEngine
from stylegan_jax.store.load import load_generator
from stylegan_jax.store.networks import save_networks

SEEDS = [3, 7, 11]


# family -> (network, noise mode, psi, class, most levels an image may differ by)
CASES = {
    "stylegan2": (lambda: visible(random_generator(8)), "const", 0.5, None, 0),
    "stylegan2-random-noise": (lambda: visible(random_generator(8)), "random", 1.0, None, 0),
    "stylegan3": (stylegan3_conditional, "const", 0.7, 1, 0),
    # StyleGAN v1's matmuls round differently at other batch sizes on XLA:CPU.
    "stylegan": (stylegan_v1, "const", 0.7, None, 1),
    "progan": (progan_conditional, "const", 1.0, 1, 0),
}


def _call(exported, prog: program.Program, net: Network, seeds, psi, class_idx, noise_seed):
    G = net.module
    given = dict(z=latents_for_seeds(seeds, G.z_dim),
                 c=labels_for(class_idx, G.c_dim, len(seeds)),
                 psi=np.float32(psi), noise_seed=np.uint32(noise_seed))
    return np.asarray(exported.call(*(given[t.name] for t in prog.inputs)))


@pytest.mark.parametrize("family", list(CASES))
def test_stablehlo_images_are_generates_for_any_batch(family):
    make, mode, psi, cls, levels = CASES[family]
    net = make()
    prog = program.build(net, "z", mode)
    exported = jax.export.deserialize(bytearray(stablehlo.serialize(prog, ("cpu",))))
    # One artifact, two batch sizes: the batch dimension is symbolic.
    for seeds in (SEEDS, SEEDS[1:2]):
        got = _call(exported, prog, net, seeds, psi, cls, noise_seed=seeds[0])
        # generate draws a batch's noise from its first seed: the artifact's noise_seed.
        want = generate_images(net, seeds, psi, class_idx=cls, noise_mode=mode,
                               batch_size=len(seeds))
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.abs(got.astype(int) - want).max() <= levels, family
    names = [t.name for t in prog.inputs]
    assert names == {"stylegan2": ["z", "psi"], "stylegan2-random-noise": ["z", "psi",
                     "noise_seed"], "stylegan3": ["z", "c", "psi"], "stylegan": ["z", "psi"],
                     "progan": ["z", "c"]}[family]


def test_w_input_is_the_synthesis_network_alone():
    net = visible(random_generator(8))
    prog = program.build(net, "w", "random")
    exported = jax.export.deserialize(bytearray(stablehlo.serialize(prog, ("cpu",))))
    ws = ws_for_seeds(net, SEEDS, 0.6)
    got = np.asarray(exported.call(ws, np.uint32(5)))
    want = images_from_ws(net, ws, "random", batch_size=len(SEEDS), seed=5)
    np.testing.assert_array_equal(got, want)
    assert prog.describe()["inputs"] == [
        {"name": "ws", "shape": ["batch", *ws.shape[1:]], "dtype": "float32"},
        {"name": "noise_seed", "shape": [], "dtype": "uint32"}]


@pytest.mark.parametrize("family", ["stylegan2-random-noise", "stylegan3", "stylegan",
                                    "progan"])
def test_savedmodel_images_are_generates_for_any_batch(family, tmp_path):
    make, mode, psi, cls, levels = CASES[family]
    net = make()
    prog = program.build(net, "z", mode)
    artifact.write(tmp_path / "sm", "savedmodel", prog, savedmodel.write, "test")
    m, call = formats.open_artifact(tmp_path / "sm")
    assert m["signature"] == "serving_default"
    for seeds in (SEEDS, SEEDS[:1]):
        given = dict(z=latents_for_seeds(seeds, net.module.z_dim),
                     c=labels_for(cls, net.module.c_dim, len(seeds)), psi=np.float32(psi),
                     noise_seed=np.uint32(seeds[0]))
        got = call(**{t["name"]: given[t["name"]] for t in m["inputs"]})
        want = generate_images(net, seeds, psi, class_idx=cls, noise_mode=mode,
                               batch_size=len(seeds))
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.abs(got.astype(int) - want).max() <= levels, family


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("family", ["stylegan2", "stylegan3", "stylegan", "progan"])
def test_tflite_and_onnx_images_are_generates_for_any_batch(fmt, family, tmp_path):
    """Converted from the SavedModel's program (TFLite) and from that TFLite model (ONNX),
    run by LiteRT's interpreter and onnxruntime with a dynamic batch."""
    make, _, psi, cls, levels = CASES[family]
    net = make()
    prog = program.build(net, "z", "const")
    artifact.write(tmp_path / "a", fmt, prog, formats.writer(fmt), "test")
    m, call = formats.open_artifact(tmp_path / "a")
    for seeds in (SEEDS, SEEDS[:1]):
        given = dict(z=latents_for_seeds(seeds, net.module.z_dim),
                     c=labels_for(cls, net.module.c_dim, len(seeds)), psi=np.float32(psi))
        got = call(**{t["name"]: given[t["name"]] for t in m["inputs"]})
        want = generate_images(net, seeds, psi, class_idx=cls, batch_size=len(seeds))
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.abs(got.astype(int) - want).max() <= levels, (fmt, family)


def test_tflite_float16_weights_are_held_to_a_bound(tmp_path):
    """Float16 weights move the tiny StyleGAN2's images by at most one level (measured);
    a generator they break (StyleGAN v1's instance-norm epsilon of 1e-8 is 0 in float16,
    and its test network's constant input has no variance) is refused, naming the levels."""
    net = CASES["stylegan2"][0]()
    artifact.write(tmp_path / "a", "tflite-f16", program.build(net), formats.writer(
        "tflite-f16"), "test")
    m, call = formats.open_artifact(tmp_path / "a")
    assert m["weights"] == "float16" and m["float16_levels"] <= 1
    got = call(z=latents_for_seeds(SEEDS, net.module.z_dim), psi=np.float32(0.5))
    assert np.abs(got.astype(int) - generate_images(net, SEEDS, 0.5, batch_size=3)).max() <= 1
    with pytest.raises(ValueError, match=r"float16 weights move this generator's images by up "
                       r"to \d+ levels"):
        formats.writer("tflite-f16")(program.build(stylegan_v1()), tmp_path)
    for fmt in ("tflite", "onnx"):
        with pytest.raises(ValueError, match=f"--format {fmt} --noise-mode random: TFLite "
                           "cannot carry"):
            formats.writer(fmt)(program.build(net, "z", "random"), tmp_path)


# What a user of each runtime writes, in a process that never imports this package or Flax.
PLAIN = {
    "stablehlo": """
        import jax
        f = jax.export.deserialize(bytearray(open(art + "/" + m["payload"], "rb").read()))
        images = f.call(z, psi)
    """,
    "savedmodel": """
        import tensorflow as tf
        run = tf.saved_model.load(art).signatures["serving_default"]
        images = run(z=tf.constant(z), psi=tf.constant(psi))["images"].numpy()
    """,
    "tflite": """
        from ai_edge_litert.interpreter import Interpreter
        run = Interpreter(model_path=art + "/generator.tflite").get_signature_runner()
        images = run(z=z, psi=psi)["images"]
        assert "tensorflow" not in sys.modules and "jax" not in sys.modules
    """,
    "onnx": """
        import onnxruntime
        session = onnxruntime.InferenceSession(art + "/generator.onnx")
        (images,) = session.run(["images"], {"z": z, "psi": np.asarray(psi)})
        assert "tensorflow" not in sys.modules and "jax" not in sys.modules
    """,
}


@pytest.mark.parametrize("fmt", list(PLAIN))
def test_shipped_generator_runs_in_a_process_without_the_package(fmt, tmp_path):
    out = tmp_path / "faces"
    assert cli.main(["export", "--format", fmt, "--out", str(out)]) == 0
    m = json.loads((out / "export.json").read_text())
    assert m | {"format": fmt, "calling_convention": 1, "family": "stylegan2",
                "resolution": 32, "input": "z", "noise_mode": "const"} == m
    assert m["output"] == {"name": "images", "shape": ["batch", 32, 32, m["channels"]],
                           "dtype": "uint8"}
    assert set(m.get("platforms", ["cpu", "cuda", "tpu"])) >= {"cpu", "cuda", "tpu"}
    assert m["software"]["jax"]
    script = tmp_path / "plain.py"
    script.write_text("\n".join([
        "import json, sys", "import numpy as np",
        "art = sys.argv[1]", "m = json.load(open(art + '/export.json'))",
        "z = np.stack([np.random.RandomState(s).randn(m['z_dim']) for s in range(8)])",
        "z, psi = z.astype(np.float32), np.float32(1)",
        textwrap.dedent(PLAIN[fmt]).strip(),
        "assert not [k for k in sys.modules if k.split('.')[0] in ('flax', 'stylegan_jax')]",
        "np.save(sys.argv[2], np.asarray(images))"]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "x.npy")],
                   check=True, cwd=tmp_path, env=env)
    got = np.load(tmp_path / "x.npy")
    assert cli.main(["generate", "--seeds", "0-7", "--outdir", str(tmp_path / "gen"),
                     "--no-grid"]) == 0
    for s in range(8):
        want = np.asarray(Image.open(tmp_path / "gen" / f"seed{s:04d}.png"))
        np.testing.assert_array_equal(got[s].reshape(want.shape), want)


@pytest.mark.parametrize("fmt", ["stablehlo", "savedmodel"])
def test_served_from_the_artifact_as_from_the_network(fmt, tmp_path):
    """The exported engine groups a batch by ψ (and by seed with random noise) and gives
    the normal engine's images, with no network built."""
    net = visible(random_generator(8))
    out = save_networks(tmp_path / "net", {"G_ema": net})
    art = tmp_path / "art"
    assert cli.main(["export", "--network", str(out), "--format", fmt, "--out",
                     str(art), "--noise-mode", "random"]) == 0
    exported, normal = ExportedEngine(art, max_batch=4), Engine(net, "random", max_batch=4)
    exported.warm_up()
    normal.warm_up()
    assert exported.spec == normal.spec and exported.noise_mode == "random"
    seeds, psis = [7, 123, 8], [0.5, 1.0, 0.5]
    np.testing.assert_array_equal(exported(seeds, psis, [None] * 3),
                                  normal(seeds, psis, [None] * 3))


# Bad input: one line each, nothing half-written.

def _export(capsys, *args):
    code = cli.main(["export", "--random-init", "--resolution", "8", *args])
    return code, capsys.readouterr().err.strip()


def _leftovers(path):
    return sorted(p.name for p in path.iterdir() if p.name.startswith("."))


def test_bad_requests_are_one_line_and_leave_nothing(tmp_path, capsys):
    out = tmp_path / "a"
    code, err = _export(capsys, "--format", "gif", "--out", str(out))
    assert code == 2 and "--format 'gif': expected one of stablehlo, savedmodel, tflite" in err
    code, err = _export(capsys, "--format", "stablehlo", "--out", str(out), "--input", "w",
                        "--noise-mode", "random")
    assert code == 0, err
    before = (out / "generator.stablehlo").read_bytes()
    code, err = _export(capsys, "--format", "stablehlo", "--out", str(out))
    assert code == 2 and "already exists; pass --force" in err and len(err.splitlines()) == 1
    assert (out / "generator.stablehlo").read_bytes() == before  # untouched
    code, err = _export(capsys, "--format", "stablehlo", "--out", str(out), "--force")
    assert code == 0 and json.loads((out / "export.json").read_text())["input"] == "z"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _export(capsys, "--format", "stablehlo", "--out", str(blocker / "x"))
    assert code == 2 and "cannot write the stablehlo export to" in err
    assert _leftovers(tmp_path) == []


def test_options_a_family_cannot_carry_are_refused(tmp_path):
    with pytest.raises(ValueError, match="ProGAN maps z straight to images"):
        program.build(progan_conditional(), "w")
    with pytest.raises(ValueError, match="--noise-mode random: a stylegan3 generator has no"):
        program.build(stylegan3_conditional(), "z", "random")
    with pytest.raises(ValueError, match="--input 'x'"):
        program.build(random_generator(8), "x")


def test_damaged_artifacts_are_refused_naming_the_file(tmp_path, capsys):
    art = tmp_path / "art"
    assert cli.main(["export", "--random-init", "--resolution", "8", "--format", "stablehlo",
                     "--out", str(art)]) == 0
    payload = art / "generator.stablehlo"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="generator.stablehlo: its content does not match"):
        artifact.read_manifest(art)
    capsys.readouterr()
    assert cli.main(["serve", "--exported", str(art), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match the sha256" in err
    (art / "export.json").write_text("{")
    with pytest.raises(ValueError, match="export.json: damaged"):
        ExportedEngine(art)
    with pytest.raises(FileNotFoundError, match="no export.json"):
        ExportedEngine(tmp_path)
    assert pretrained.path().is_dir()  # nothing of the package was touched


def test_bench_export_prints_a_row_per_format(capsys):
    assert cli.main(["bench-export", "--random-init", "--resolution", "8", "--batches", "1,2",
                     "--min-seconds", "0.05", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    res = json.loads(out[-1])
    assert [r["format"] for r in res["rows"]] == ["jax (this package)", "stablehlo",
                                                  "savedmodel", "tflite", "tflite-f16", "onnx"]
    for r in res["rows"][1:]:
        assert r["mib"] > 0 and r["cold_s"] > 0 and r["export_s"] > 0
        assert all(r["per_batch"][b] > 0 for b in ("1", "2"))
    assert sum(line.startswith("| stablehlo |") for line in out) == 1


def test_a_w_x_h_stylegan3_exports_to_onnx_with_nvidias_images(tmp_path):
    """NVIDIA's StyleGAN3 layers built 32x16 (tests/data/stylegan3_rect, the recorded
    weights in a network directory) -> `export --format onnx --input w` -> onnxruntime on
    the reference ws: NVIDIA's images within one 8-bit level, W x H kept."""
    from official_fixtures import DATA, load, nchw_to_nhwc, subdict

    from stylegan_jax.convert.torch_stylegan3 import generator_kwargs, state_dict_to_variables
    from stylegan_jax.models import stylegan3

    meta, arrays = load(DATA / "stylegan3_rect" / "stylegan3_t_16_wide.npz")
    G = stylegan3.Generator(**generator_kwargs(meta["kwargs"]), img_aspect=tuple(meta["aspect"]))
    v = state_dict_to_variables(subdict(arrays, "G/"), G)
    save_networks(tmp_path / "net", {"G_ema": Network(G, v)})
    out = tmp_path / "sg3-onnx"
    assert cli.main(["export", "--network", str(tmp_path / "net"), "--format", "onnx",
                     "--input", "w", "--out", str(out)]) == 0
    m, call = formats.open_artifact(out)
    assert (m["family"], m["input"], m["opset"]) == ("stylegan3", "w", 18)
    got = call(ws=np.asarray(arrays["io/ws_notrunc"], np.float32)).astype(np.float32)
    want = np.clip(np.asarray(nchw_to_nhwc(arrays["io/img_notrunc"])) * 127.5 + 128, 0, 255)
    assert got.shape[1:3] == (16, 32)
    assert np.abs(got - want.reshape(got.shape)).max() <= 1.0


def test_a_missing_converter_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "stylegan_jax.export.onnx", raising=False)
    code, err = _export(capsys, "--format", "onnx", "--out", str(tmp_path / "x"))
    assert code == 2 and len(err.splitlines()) == 1
    assert "--format onnx needs onnxruntime" in err and "stylegan-jax[export]" in err
    assert not (tmp_path / "x").exists()


def test_a_training_run_exports_its_newest_checkpoint(tiny_run, tmp_path):
    workdir, _, _ = tiny_run
    out = tmp_path / "run-export"
    assert cli.main(["export", "--network", str(workdir), "--format", "stablehlo", "--out",
                     str(out)]) == 0
    m, call = formats.open_artifact(out)
    assert m["source"] == str(workdir)
    net = load_generator(workdir)
    given = dict(z=latents_for_seeds(SEEDS, m["z_dim"]), psi=np.float32(0.5),
                 c=labels_for(0 if m["c_dim"] else None, m["c_dim"], len(SEEDS)))
    got = call(**{t["name"]: given[t["name"]] for t in m["inputs"]})
    want = generate_images(net, SEEDS, 0.5, class_idx=0 if m["c_dim"] else None,
                           batch_size=len(SEEDS))
    np.testing.assert_array_equal(got, want)
