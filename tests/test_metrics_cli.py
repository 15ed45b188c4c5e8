"""`stylegan-jax metrics` end to end, its image sources, and the feature-network benchmark."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from feature_net_fixtures import files_of, rule_state_dict
from metrics_toy_inception import np_fid, np_quantize, np_toy_pool3, toy_pool3
from official_fixtures import load
from PIL import Image
from tiny_generators import visible
from torch_zip_writer import write_zip_state_dict

from stylegan_jax.metrics import benchmark, command, detectors, image_source, runner
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network, random_generator
from stylegan_jax.store.load import load_networks
from stylegan_jax.store.networks import save_networks


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


@pytest.mark.slow  # ~35 s on 2 CPU cores: a 95 MB weight file and Inception at 299²
def test_cli_computes_fid_from_weight_files(tmp_path, monkeypatch, capsys):
    """A network directory, an .npz of real images and the Inception weights as a .pth
    file (the reference fixture's rule weights in torch's zip layout)."""
    meta, _ = load(files_of("pytorch_fid_inception")[0])
    weights = write_zip_state_dict(tmp_path / "pt_inception-test.pth",
                                   rule_state_dict(meta["state_dict_keys"]), monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    nets = save_networks(tmp_path / "nets", {"G_ema": random_generator(16)})
    reals = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "real.npz", images=reals)
    code = _run(command, [
        "--metrics", "fid8_full", "--network", str(nets), "--data", str(tmp_path / "real.npz"),
        "--inception-weights", str(weights), "--cache-dir", str(tmp_path / "cache"),
        "--run-dir", str(tmp_path / "run"), "--batch", "8", "--no-progress"])
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["metric"] == "fid8_full" and line["results"]["fid8_full"] > 0
    assert line["snapshot_pkl"] == "../nets"
    written = (tmp_path / "run" / "metric-fid8_full.jsonl").read_text().splitlines()
    assert json.loads(written[0])["results"] == line["results"]
    assert list((tmp_path / "cache").glob("real-*-pt_inception-test-*.npz"))
    prov = line["provenance"]  # how the score was made
    assert prov["detector"]["files"] == [
        {"file": weights.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}]
    assert prov["counts"] == {"generated": 8, "real": 8}
    assert prov["data"]["kind"] == "npz" and prov["data"]["count"] == 8
    assert prov["data"]["resize_filter"] is None  # given pixels: no resize of ours
    assert prov["settings"] == {"name": "fid8_full", "kind": "fid", "num_gen": 8,
                                "max_real": None}
    assert prov["evaluation"]["seed"] == 0 and prov["software"]["jax"]


def test_cli_fid_equals_the_library_and_numpy(tmp_path, monkeypatch, capsys):
    """`stylegan-jax metrics --metrics fid64_full` on a network directory, reals in an NCHW
    .npz and the FID Inception weights as a .pth file (the flag's file; a different file
    waits in $SGJ_INCEPTION_WEIGHTS) equals (a) `runner.compute_metrics` on the same
    inputs and (b) NumPy/SciPy: the official FID (biased covariances, sqrtm) of features
    computed in NumPy from the written state dict, of the npz's pixels and of the
    generator's images for the CLI's latents (z of image i: row i of
    default_rng([seed, 0]).standard_normal), quantised as the official code does. Inception
    is cut to its first layer (metrics_toy_inception): the real 299x299 forward is the slow
    test above."""
    meta, _ = load(files_of("pytorch_fid_inception")[0])
    sd = rule_state_dict(meta["state_dict_keys"])
    given = write_zip_state_dict(tmp_path / "given.pth", sd, monkeypatch)
    sha = hashlib.sha256(given.read_bytes()).hexdigest()
    weights = given.rename(tmp_path / f"pt_inception-2015-12-05-{sha[:8]}.pth")  # checked
    decoy_sd = dict(sd, **{"Conv2d_1a_3x3.conv.weight": -sd["Conv2d_1a_3x3.conv.weight"]})
    decoy = write_zip_state_dict(tmp_path / "pt_inception-decoy.pth", decoy_sd, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setenv("SGJ_INCEPTION_WEIGHTS", str(decoy))  # the flag must win
    monkeypatch.setitem(detectors.FEATURES, "inception", toy_pool3)

    module = stylegan2.Generator(z_dim=64, c_dim=0, w_dim=32, img_resolution=16,
                                 img_channels=3, mapping_layers=2, channel_base=512,
                                 channel_max=32)
    key = jax.random.PRNGKey(1)
    G = visible(Network(module, jax.jit(module.init)(  # noise on: --noise-mode must reach G
        {"params": key, "noise": key}, jnp.zeros((1, 64)), jnp.zeros((1, 0)))))
    nets = save_networks(tmp_path / "nets", {"G_ema": G})
    render = jax.jit(lambda z: G.module.apply(G.variables, z, jnp.zeros((len(z), 0)),
                                              noise_mode="const"))
    # reals: images of the same generator (other latents) with a per-channel shift, so that
    # FID is small and a swap of channels or axes shows
    z_real = np.random.default_rng(7).standard_normal((40, 64)).astype(np.float32)
    reals = np_quantize(render(z_real)).astype(int) + [9, 0, -6]
    reals = np.clip(reals, 0, 255).astype(np.uint8)
    np.savez(tmp_path / "real.npz", images=reals.transpose(0, 3, 1, 2))  # NCHW, as official

    argv = ["--metrics", "fid64_full", "--network", str(nets), "--data",
            str(tmp_path / "real.npz"), "--inception-weights", str(weights), "--cache-dir",
            str(tmp_path / "cache"), "--run-dir", str(tmp_path / "run"), "--batch", "16",
            "--noise-mode", "const", "--no-progress"]
    assert _run(command, argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cli = line["results"]["fid64_full"]
    written = (tmp_path / "run" / "metric-fid64_full.jsonl").read_text().splitlines()
    assert json.loads(written[-1])["results"] == line["results"]
    assert [f["file"] for f in line["provenance"]["detector"]["files"]] == [weights.name]

    G_loaded = load_networks(nets)["G_ema"]
    lib = runner.compute_metrics(
        ["fid64_full"], G_loaded, lambda: iter([reals[:25], reals[25:]]), None,
        detectors=detectors.Detectors(weights={"inception": weights}), batch_size=16,
        noise_mode="const", progress=False)["fid64_full"].results["fid64_full"]
    assert cli == pytest.approx(lib, rel=1e-6)

    z = np.random.default_rng([0, 0]).standard_normal((64, 64)).astype(np.float32)
    fake = np_quantize(np.asarray(render(z)))
    want = np_fid(np_toy_pool3(sd, fake), np_toy_pool3(sd, reals))
    assert cli == pytest.approx(want, rel=2e-5)


def test_cli_needs_data_for_real_image_metrics(tmp_path):
    nets = save_networks(tmp_path / "nets", {"G": random_generator(16)})
    with pytest.raises(ValueError, match="--data is needed for fid50k_full"):
        _run(command, ["--metrics", "fid50k_full", "--network", str(nets)])
    with pytest.raises(ValueError, match="unknown metric 'fid50x'"):
        _run(command, ["--metrics", "fid50x", "--network", str(nets)])


def test_workdir_uses_its_newest_network_directory(tmp_path):
    g = random_generator(16)
    for kimg in (40, 120):
        save_networks(tmp_path / f"network-snapshot-{kimg:06d}", {"G": g})
    assert command.find_network_dir(tmp_path).name == "network-snapshot-000120"
    with pytest.raises(FileNotFoundError, match="no exported network directory"):
        command.find_network_dir(tmp_path / "network-snapshot-000040" / "..x")


def test_image_folder_with_labels_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    names = ["b.png", "a.png", "sub/c.jpg", "sub/d.png", "e.png"]
    for name, img in zip(names, imgs, strict=True):
        Image.fromarray(img).save(tmp_path / "imgs" / name, quality=100)
    (tmp_path / "imgs" / "dataset.json").write_text(json.dumps(
        {"labels": [[n, i % 3] for i, n in enumerate(names)]}))
    src = image_source.open_images(tmp_path / "imgs")
    assert src.count == 5
    order = ["a.png", "b.png", "e.png", "sub/c.jpg", "sub/d.png"]  # sorted relative paths
    got = np.concatenate(list(src.batches(2, 0, 1)))
    for i, name in enumerate(order):
        if name.endswith(".png"):
            np.testing.assert_array_equal(got[i], imgs[names.index(name)])
    np.testing.assert_array_equal(np.argmax(src.labels, 1),
                                  [names.index(n) % 3 for n in order])
    assert [len(b) for b in src.batches(8, 1, 2)] == [2]  # process 1 of 2: items 1, 3
    draw = src.label_fn(3)(np.random.default_rng(0), 4)
    assert draw.shape == (4, 3) and np.all(draw.sum(1) == 1)
    with pytest.raises(ValueError, match="labels have 3 dims, the generator expects 5"):
        src.label_fn(5)

    np.savez(tmp_path / "x.npz", images=np.transpose(imgs, (0, 3, 1, 2)))  # NCHW
    npz = image_source.open_images(tmp_path / "x.npz")
    np.testing.assert_array_equal(np.concatenate(list(npz.batches(3, 0, 1))), imgs)
    with pytest.raises(ValueError, match="no labels"):
        npz.label_fn(2)
    assert npz.key != src.key


def test_benchmark_prints_throughput(capsys):
    assert _run(benchmark, ["--nets", "lpips", "--resolution", "16", "--batch", "8",
                            "--iters", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["lpips"]["per_s"] > 0 and result["num_devices"] >= 1
