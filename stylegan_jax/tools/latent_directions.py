"""Editing directions in W and applying them: SeFa, GANSpace, supervised (InterFaceGAN).

A direction is a unit vector v in W with the layers (ws indices) it applies to; an edit of
strength s adds s * sigma * v to those layers' w, where sigma is the std of sampled w along v,
so that strength 1 is one standard deviation of the generator's own w for every method.

- SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs"): the top
  eigenvectors of A Aᵀ, A [w_dim, C] the style affine weights of the chosen layers side by
  side, each column scaled to unit norm (genforce/sefa `factorize_weight`).
- GANSpace (Härkönen et al. 2020): principal components of w over sampled latents (psi 1).
- Supervised (InterFaceGAN, Shen et al. 2020): the unit normal of a linear classifier of
  labelled w (logistic regression, fitted on a training split, scored on a held-out one).

Directions are stored in one .npz (`save_directions` / `load_directions`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from stylegan_jax import atomic
from stylegan_jax.models.registry import family_of
from stylegan_jax.models.sampling import mapping_jit, w_shape

METHODS = ("sefa", "ganspace", "labels")
FORMAT = "stylegan_jax.directions/1"
SIGMA_SAMPLES = 10_000  # sampled w for each direction's sigma
GANSPACE_SAMPLES = 100_000


@dataclasses.dataclass(frozen=True, eq=False)
class Direction:
    """One editing direction; strength 1 moves the w of `layers` by `sigma` along `vector`."""

    vector: np.ndarray  # [w_dim] float32, unit length
    sigma: float  # std of sampled w along `vector`
    layers: tuple[int, int]  # first and last ws index (inclusive) the edit applies to
    method: str  # 'sefa' | 'ganspace' | 'labels'
    score: float  # sefa: eigenvalue share; ganspace: explained variance ratio; labels: accuracy
    name: str  # 'sefa0', 'pc3', or a class name


# --- layers, edits, strengths ------------------------------------------------------------


def check_layers(layers: Sequence[int], num_ws: int, what: str = "layers") -> tuple[int, int]:
    """(first, last) ws indices, 0 <= first <= last < num_ws."""
    try:
        first, last = (int(x) for x in layers)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected (first, last) ws indices, got {layers!r}") from None
    if not 0 <= first <= last < num_ws:
        raise ValueError(f"{what}: layers {first}-{last} are not a range within this "
                         f"generator's {num_ws} ws (0-{num_ws - 1})")
    return first, last


def parse_layers(text: str, num_ws: int, what: str = "--layers") -> tuple[int, int]:
    """'a-b' or 'a' -> (a, b), inclusive ws indices checked against `num_ws`."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise ValueError(f"{what}: {text!r} is not a layer range like 0-3 or 5 "
                         f"(ws indices 0-{num_ws - 1})")
    return check_layers((int(m[1]), int(m[2] if m[2] is not None else m[1])), num_ws, what)


def parse_edits(text: str) -> list[tuple[int, float]]:
    """'0:1.5,3:-2' -> [(0, 1.5), (3, -2.0)]: direction index and strength; '' -> []."""
    edits = []
    for part in text.split(","):
        if not part.strip():
            continue
        index, sep, strength = part.partition(":")
        try:
            k, s = int(index), float(strength)
        except ValueError:
            k, s = -1, math.nan
        if not sep or k < 0 or not math.isfinite(s):
            raise ValueError(f"edit {part.strip()!r} in {text!r} is not INDEX:STRENGTH "
                             "(e.g. 0:1.5,3:-2; index >= 0, strength a finite number)")
        edits.append((k, s))
    return edits


def parse_strengths(text: str, what: str = "--strengths") -> np.ndarray:
    """'a:b:n' -> n evenly spaced strengths from a to b; '1,2.5' -> those values."""
    parts = text.split(":")
    try:
        if len(parts) == 3:
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1 or (n == 1 and lo != hi):
                raise ValueError
            values = np.linspace(lo, hi, n)
        elif len(parts) == 1:
            values = np.array([float(v) for v in text.split(",")])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not A:B:N (N >= 2 evenly spaced values from "
                         "A to B, e.g. -3:3:7) or a list like -2,0,2") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}: {text!r} has a non-finite strength")
    return values


def edit_offset(directions: Sequence[Direction], edits: Sequence[tuple[int, float]],
                num_ws: int, w_dim: int) -> np.ndarray:
    """[num_ws, w_dim] float32: the sum over edits (k, s) of s * sigma_k * vector_k on the
    rows layers_k; add it to ws [N, num_ws, w_dim]."""
    offset = np.zeros((num_ws, w_dim), np.float64)
    for k, strength in edits:
        if not 0 <= k < len(directions):
            raise ValueError(f"direction index {k} out of range: there are {len(directions)} "
                             f"directions (0-{len(directions) - 1})")
        d = directions[k]
        if d.vector.shape != (w_dim,):
            raise ValueError(f"direction {k} ({d.name}) has {d.vector.shape[-1]} dims; this "
                             f"generator's w_dim is {w_dim}")
        first, last = check_layers(d.layers, num_ws, f"direction {k} ({d.name})")
        offset[first:last + 1] += strength * d.sigma * d.vector.astype(np.float64)
    return offset.astype(np.float32)


def with_layers(direction: Direction, layers: tuple[int, int]) -> Direction:
    return dataclasses.replace(direction, layers=tuple(int(x) for x in layers))


# --- the .npz -------------------------------------------------------------------------


def save_directions(path: str | Path, directions: Sequence[Direction], meta: dict) -> Path:
    """One .npz (written atomically): vectors [K, w_dim], sigmas, layers [K, 2], scores,
    methods, names, num_ws, w_dim and `meta` (JSON: the network, the method's settings)."""
    if not directions:
        raise ValueError("no directions to save")
    path = Path(path)
    num_ws, w_dim = int(meta["num_ws"]), int(meta["w_dim"])
    buf = io.BytesIO()
    np.savez(
        buf, format=np.array(FORMAT),
        vectors=np.stack([d.vector for d in directions]).astype(np.float32),
        sigmas=np.array([d.sigma for d in directions], np.float64),
        layers=np.array([check_layers(d.layers, num_ws, d.name) for d in directions], np.int64),
        scores=np.array([d.score for d in directions], np.float64),
        methods=np.array([d.method for d in directions]),
        names=np.array([d.name for d in directions]),
        num_ws=np.array(num_ws), w_dim=np.array(w_dim),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    try:
        atomic.replace_file(path, buf.getvalue())
    except OSError as e:
        raise atomic.write_error(f"the directions file {path}", e) from None
    return path


def _field(path: Path, data, key: str, ndim: int, kind: str) -> np.ndarray:
    if key not in data.files:
        raise ValueError(f"{path}: not a directions file (no field {key!r}; it has "
                         f"{sorted(data.files)})")
    a = data[key]
    if a.ndim != ndim or a.dtype.kind not in kind:
        raise ValueError(f"{path}: field {key!r} is {a.dtype}{list(a.shape)}, expected a "
                         f"{ndim}-d {'number' if kind != 'U' else 'string'} array")
    return a


def _open(path: Path):
    if path.is_dir():
        raise ValueError(f"directions file {path}: is a directory, expected a .npz")
    if not path.is_file():
        raise FileNotFoundError(f"directions file {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    except (ValueError, EOFError):  # numpy: not .npy / .npz (it suggests pickle then)
        raise ValueError(f"{path}: not a directions .npz (not a numpy archive)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array (.npy), not a directions .npz")
    return data


def load_meta(path: str | Path) -> dict:
    """The `meta` dict saved with a directions file (network, method settings)."""
    path = Path(path)
    with _open(path) as data:
        return json.loads(str(_field(path, data, "meta", 0, "U")))


def load_directions(path: str | Path, num_ws: int | None = None,
                    w_dim: int | None = None) -> list[Direction]:
    """The directions of a `save_directions` file, checked against a generator's
    (num_ws, w_dim) where given."""
    path = Path(path)
    with _open(path) as data:
        fmt = str(_field(path, data, "format", 0, "U"))
        if fmt != FORMAT:
            raise ValueError(f"{path}: field 'format' is {fmt!r}, expected {FORMAT!r}")
        vectors = _field(path, data, "vectors", 2, "f")
        k, dim = vectors.shape
        fields = {key: _field(path, data, key, 1, kind) for key, kind in
                  (("sigmas", "f"), ("scores", "f"), ("methods", "U"), ("names", "U"))}
        layers = _field(path, data, "layers", 2, "iu")
        file_ws, file_dim = (int(_field(path, data, key, 0, "iu")) for key in ("num_ws", "w_dim"))
    for key, a in (*fields.items(), ("layers", layers)):
        if len(a) != k:
            raise ValueError(f"{path}: field {key!r} has {len(a)} entries for {k} vectors")
    if layers.shape[1] != 2 or dim != file_dim:
        raise ValueError(f"{path}: field 'layers' must be [K, 2] and 'vectors' [K, w_dim="
                         f"{file_dim}], got {list(layers.shape)} and {list(vectors.shape)}")
    if (num_ws not in (None, file_ws)) or (w_dim not in (None, file_dim)):
        have = ", ".join(f"{k} {v}" for k, v in (("num_ws", num_ws), ("w_dim", w_dim))
                         if v is not None)
        raise ValueError(f"{path}: the directions were made for a generator with num_ws "
                         f"{file_ws}, w_dim {file_dim}; this one has {have}")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(vectors)) or np.any(np.abs(norms - 1) > 1e-3):
        raise ValueError(f"{path}: field 'vectors' must hold finite unit vectors")
    bad = sorted(set(fields["methods"]) - set(METHODS))
    if bad:
        raise ValueError(f"{path}: field 'methods' has {bad}, expected one of {METHODS}")
    sigmas = fields["sigmas"]
    if not np.all(np.isfinite(sigmas)) or np.any(sigmas < 0):
        raise ValueError(f"{path}: field 'sigmas' must be finite and >= 0")
    return [
        Direction(vectors[i].astype(np.float32), float(sigmas[i]),
                  check_layers(layers[i], file_ws, f"{path}: direction {i}"),
                  str(fields["methods"][i]), float(fields["scores"][i]), str(fields["names"][i]))
        for i in range(k)
    ]


# --- sampling W ------------------------------------------------------------------------


def sample_w(module, variables, num: int, seed: int = 0, batch_size: int = 4096
             ) -> np.ndarray:
    """float64 w [num, w_dim] of z from RandomState(seed) (psi 1; a conditional generator's
    classes drawn uniformly from the same stream), mapped by one compiled program."""
    _, w_dim = w_shape(module)
    if num < 2:
        raise ValueError(f"need at least 2 sampled w, got {num}")
    rnd = np.random.RandomState(seed)
    z = rnd.randn(num, module.z_dim).astype(np.float32)
    c_dim = module.c_dim
    c = np.zeros((num, c_dim), np.float32)
    if c_dim:
        c[np.arange(num), rnd.randint(c_dim, size=num)] = 1
    size = min(batch_size, num)
    out = []
    for start in range(0, num, size):
        zb, cb = z[start:start + size], c[start:start + size]
        pad = size - len(zb)
        zb, cb = (np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in (zb, cb))
        ws = mapping_jit(module, variables, jnp.asarray(zb), jnp.asarray(cb))
        out.append(np.asarray(ws[: size - pad, 0], np.float64))
    return np.concatenate(out)


def _sigma(w: np.ndarray, v: np.ndarray) -> float:
    return float(np.std(np.asarray(w, np.float64) @ np.asarray(v, np.float64)))


def _oriented(v: np.ndarray) -> np.ndarray:
    """v with its largest-magnitude entry positive: an eigenvector's sign is arbitrary, this
    makes it reproducible."""
    return v if v[np.argmax(np.abs(v))] >= 0 else -v


def _all_layers(layers, num_ws: int) -> tuple[int, int]:
    return (0, num_ws - 1) if layers is None else check_layers(layers, num_ws)


def _check_num(num: int, w_dim: int) -> None:
    if not 1 <= num <= w_dim:
        raise ValueError(f"num: between 1 and w_dim ({w_dim}) directions, got {num}")


# --- SeFa ------------------------------------------------------------------------------


def style_affines(module, variables, layers: tuple[int, int] | None = None
                  ) -> list[tuple[str, np.ndarray]]:
    """(name, A [w_dim, C]) of the style affines the ws in `layers` feed, in ws order.

    StyleGAN2 as SeFa's code takes them: ws index i feeds conv layer i, the last index the
    last ToRGB (the intermediate ToRGBs share their index with the next block's first conv
    and are left out). StyleGAN v1: each layer's StyleMod (scale and shift). StyleGAN3: ws 0
    the input's transform affine, ws i + 1 layer i (the last one the ToRGB). Stored weights
    are used as they are: equalised learning rate scales each layer uniformly, which the
    column normalisation removes.
    """
    num_ws, _ = w_shape(module)
    first, last = _all_layers(layers, num_ws)
    params = variables["params"]
    family = family_of(module).name
    if family == "stylegan2":
        syn = params["synthesis"]
        log2 = int(math.log2(module.img_resolution))
        convs = ["b4/conv1"] + [f"b{2**r}/conv{i}" for r in range(3, log2 + 1) for i in (0, 1)]
        names = [f"{c}/affine" for c in [*convs, f"b{module.img_resolution}/torgb"]]
    elif family == "stylegan":
        syn = params["G_synthesis"]
        names = []
        for r in range(2, int(math.log2(module.resolution)) + 1):
            pair = ("Const", "Conv") if r == 2 else ("Conv0_up", "Conv1")
            names += [f"{2**r}x{2**r}/{layer}/StyleMod" for layer in pair]
    elif family == "stylegan3":
        syn = params["synthesis"]
        convs = sorted((k for k in syn if re.fullmatch(r"L\d+_\d+_\d+", k)),
                       key=lambda k: int(k[1:].split("_")[0]))
        names = ["input/affine"] + [f"{k}/affine" for k in convs]
    else:
        raise ValueError(f"SeFa: no style affines known for a {family} generator")
    if len(names) != num_ws:
        raise ValueError(f"SeFa: found {len(names)} style affines for {num_ws} ws")
    out = []
    for name in names[first:last + 1]:
        node = syn
        for part in name.split("/"):
            node = node[part]
        out.append((name, np.asarray(node["weight"], np.float64)))
    return out


def sefa_eigen(affines: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues [w_dim] descending, eigenvectors [w_dim, w_dim] as columns) of A Aᵀ,
    A the affines side by side with unit-norm columns (all-zero columns left out: a fresh
    StyleGAN3's input affine)."""
    a = np.concatenate([np.asarray(x, np.float64) for x in affines], axis=1)
    norms = np.linalg.norm(a, axis=0)
    a = a[:, norms > 0] / norms[norms > 0]
    if a.shape[1] == 0:
        raise ValueError("SeFa: the chosen layers' style affine weights are all zero")
    values, vectors = np.linalg.eigh(a @ a.T)
    order = np.argsort(values)[::-1]
    return np.clip(values[order], 0, None), vectors[:, order]


def sefa(module, variables, layers: tuple[int, int] | None = None, num: int = 10,
         sigma_samples: int = SIGMA_SAMPLES, seed: int = 0) -> list[Direction]:
    """The top `num` SeFa directions of the style affines `layers` feed (default: all);
    score: the eigenvalue's share of their sum."""
    num_ws, w_dim = w_shape(module)
    layers = _all_layers(layers, num_ws)
    _check_num(num, w_dim)
    values, vectors = sefa_eigen([a for _, a in style_affines(module, variables, layers)])
    w = sample_w(module, variables, sigma_samples, seed)
    return _ranked(vectors, values, num, w, layers, "sefa", "sefa")


# --- GANSpace --------------------------------------------------------------------------


def principal_components(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(variances [D] descending, components [D, D] as columns) of w [N, D] (PCA by SVD of
    the centred samples; variance = squared singular value / N)."""
    x = np.asarray(w, np.float64)
    x = x - x.mean(axis=0)
    n, d = x.shape
    _, s, vt = np.linalg.svd(x, full_matrices=n < d)  # n < d: the null space's axes too
    return np.concatenate([s**2 / n, np.zeros(d - len(s))]), vt.T


def ganspace(module, variables, layers: tuple[int, int] | None = None, num: int = 10,
             num_samples: int = GANSPACE_SAMPLES, seed: int = 0) -> list[Direction]:
    """The top `num` principal components of w over `num_samples` latents (psi 1); sigma is
    the std along each, score its explained variance ratio."""
    num_ws, w_dim = w_shape(module)
    layers = _all_layers(layers, num_ws)
    _check_num(num, w_dim)
    w = sample_w(module, variables, num_samples, seed)
    variances, components = principal_components(w)
    return _ranked(components, variances, num, w, layers, "ganspace", "pc")


def _ranked(vectors: np.ndarray, values: np.ndarray, num: int, w: np.ndarray,
            layers: tuple[int, int], method: str, prefix: str) -> list[Direction]:
    """The first `num` columns of `vectors` (strongest first) as directions scored by their
    share of `values`, each with the std of the sampled w along it."""
    out = []
    for k in range(num):
        v = _oriented(vectors[:, k])
        out.append(Direction(v.astype(np.float32), _sigma(w, v), layers, method,
                             float(values[k] / values.sum()), f"{prefix}{k}"))
    return out


# --- supervised (InterFaceGAN) ---------------------------------------------------------


def logistic_regression(x: np.ndarray, y: np.ndarray, l2: float = 1.0, max_iter: int = 100
                        ) -> tuple[np.ndarray, float]:
    """(coef [D], bias) minimising sum log(1 + exp(-t (x·coef + bias))) + l2/2 |coef|²,
    t = ±1 from y in {0, 1}: Newton's method (IRLS) with a backtracking line search. The
    penalty keeps separable data (where the unpenalised optimum is at infinity) finite;
    the bias is not penalised."""
    x = np.asarray(x, np.float64)
    t = np.where(np.asarray(y) > 0, 1.0, -1.0)
    n, d = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    reg = np.full(d + 1, float(l2))
    reg[-1] = 1e-9  # the bias: unpenalised, kept just off singular

    def objective(beta):
        return np.sum(np.logaddexp(0.0, -t * (xb @ beta))) + 0.5 * np.sum(reg * beta**2)

    beta = np.zeros(d + 1)
    f = objective(beta)
    for _ in range(max_iter):
        margin = t * (xb @ beta)
        p = 0.5 * (1 + np.tanh(-margin / 2))  # sigmoid(-margin), stable
        grad = -xb.T @ (t * p) + reg * beta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        decrease = grad @ step
        if decrease < 1e-12 * max(1.0, abs(f)):
            break
        size = 1.0
        while size > 1e-10:
            new = objective(beta - size * step)
            if new <= f - 1e-4 * size * decrease:
                break
            size *= 0.5
        beta, f = beta - size * step, new
    return beta[:d], float(beta[d])


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: each class split at random, at least one sample on each side."""
    rnd = np.random.RandomState(seed)
    train, val = [], []
    for k in np.unique(labels):
        idx = rnd.permutation(np.flatnonzero(labels == k))
        n_val = min(max(1, int(round(len(idx) * val_fraction))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def supervised(w: np.ndarray, labels: np.ndarray, names: Sequence[str],
               layers: tuple[int, int] | None = None, num_ws: int | None = None,
               sigma_w: np.ndarray | None = None, val_fraction: float = 0.3, l2: float = 1.0,
               seed: int = 0) -> list[Direction]:
    """One direction per class (one-vs-rest; with two classes they are opposite): the unit
    normal of a logistic regression of class k against the rest, fitted on a stratified
    training split, pointing toward class k; score: accuracy on the held-out split
    (InterFaceGAN's 70/30). w: [N, w_dim] or ws [N, num_ws, w_dim] (projections: their first
    w); labels: ints in [0, len(names)); sigma from `sigma_w` (sampled w of the generator;
    default: w itself). `layers` default all, which needs num_ws (or 3-d ws)."""
    w = np.asarray(w, np.float64)
    if w.ndim == 3:
        num_ws = w.shape[1] if num_ws is None else num_ws
        w = w[:, 0]
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.dtype.kind == "f":
        raise ValueError(f"supervised: labels {list(labels.shape)} are label vectors (continuous "
                         "or multi-hot conditions), not classes; one direction per class needs "
                         "a class index per w")
    if w.ndim != 2 or labels.shape != (len(w),):
        raise ValueError(f"supervised: w must be [N, w_dim] (or [N, num_ws, w_dim]) with one "
                         f"label each, got w {list(w.shape)} and labels {list(labels.shape)}")
    if not np.all(np.isfinite(w)):
        raise ValueError("supervised: w has non-finite values")
    if num_ws is None:
        if layers is None:
            raise ValueError("supervised: give layers or num_ws (for all layers)")
        num_ws = int(layers[1]) + 1  # nothing to check the range against
    layers = _all_layers(layers, num_ws)
    k = len(names)
    if k < 2:
        raise ValueError(f"supervised: need at least 2 classes, got {list(names)}")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"supervised: labels must be integers in [0, {k}) (classes "
                         f"{list(names)}), got {np.unique(labels).tolist()}")
    counts = np.bincount(labels, minlength=k)
    if counts.min() < 2:
        raise ValueError(f"supervised: every class needs at least 2 labelled w (one to fit, "
                         f"one to score); counts {dict(zip(names, counts.tolist(), strict=True))}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"supervised: val_fraction must be in (0, 1), got {val_fraction}")
    train, val = stratified_split(labels, val_fraction, seed)
    # One global scale (a rotation-free change) so that l2 means the same for any w scale.
    mean, scale = w[train].mean(axis=0), w[train].std() or 1.0
    x = (w - mean) / scale
    sigma_w = w if sigma_w is None else sigma_w
    out = []
    for c in range(k):
        y = labels == c
        coef, bias = logistic_regression(x[train], y[train], l2)
        norm = np.linalg.norm(coef)
        if norm == 0:
            raise ValueError(f"supervised: class {names[c]!r} gives no direction (the "
                             "classifier is constant)")
        accuracy = float(np.mean(((x[val] @ coef + bias) > 0) == y[val]))
        v = coef / norm
        out.append(Direction(v.astype(np.float32), _sigma(sigma_w, v), layers, "labels",
                             accuracy, str(names[c])))
    return out
