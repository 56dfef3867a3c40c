"""Synthetic grain micrographs with exact masks: Voronoi tessellations and regular tilings.

The idea of the paper's reference [1] (artificial Voronoi grains for pre-training): seeds are placed in
the image plane, every pixel belongs to its nearest seed (a Voronoi cell = a grain), and pixels closer
than half a boundary width to the bisector with a neighbouring seed are grain boundary.  Because the
geometry is known, the label image, the mask and the grain count are exact, which makes the generator
usable both for pre-training and as ground truth for the ASTM E112 measurements in the tests.

- :func:`random_seeds` (Poisson-like Voronoi), :func:`hexagonal_seeds`, :func:`square_seeds` (regular
  tilings with known grain areas and intercepts);
- :func:`tessellate`: seeds -> (labels, mask) with exact boundary bands;
- :func:`render_micrograph`: a label/mask pair -> an optical-micrograph-like image (bright grains with
  tone variation, dark boundaries, dark etch speckle near boundaries, twin lines, blur and noise);
- :func:`make_micrograph`: all three in one call; :class:`SyntheticGrainDataset`: a torch Dataset of
  (image, mask) pairs for pre-training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .datasets import PreprocessedItems

__all__ = [
    "SyntheticMicrograph",
    "random_seeds",
    "hexagonal_seeds",
    "square_seeds",
    "tessellate",
    "render_micrograph",
    "render_randomized",
    "make_micrograph",
    "STYLES",
    "SyntheticGrainDataset",
    "SyntheticSegmentationDataset",
    "parse_synthetic_spec",
    "LATTICES",
]

#: Seed layouts understood by :func:`make_micrograph`.
LATTICES = ("voronoi", "hexagonal", "square")
#: Rendering styles of :func:`make_micrograph`: the ExONE-like optical look, or domain randomisation.
STYLES = ("optical", "randomized")

Shape = Tuple[int, int]
RngLike = Union[None, int, np.random.Generator]


@dataclass
class SyntheticMicrograph:
    """One synthetic micrograph and its exact ground truth.

    ``image``: uint8 (H, W) or (H, W, 3); ``mask``: uint8 {0, 1} with 1 = grain interior (the ExONE
    convention); ``labels``: int32 (H, W) tessellation, every pixel (boundary too) carries the 1-based id
    of the grain whose seed is nearest; ``n_grains``: grains with at least one interior pixel;
    ``seeds``: (N, 2) float (row, col) seed positions, ``density``: seeds per pixel^2 of the process.
    """

    image: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    n_grains: int
    seeds: np.ndarray
    density: float


def _check_shape(shape: Sequence[int]) -> Shape:
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise ValueError(f"shape must be (height, width) positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _positive(value: float, name: str) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def random_seeds(shape: Sequence[int], n_grains: int, rng: RngLike = None, margin: float = 0.15) -> Tuple[np.ndarray, float]:
    """Uniform random seeds: ``n_grains`` expected in the image, placed in a window padded by ``margin``.

    Padding the window (by ``margin`` of each side) keeps the tessellation stationary up to the image
    edges, so the edge grains are not enlarged and the grain density is exactly ``n_grains / (H W)``.
    Returns (seeds (N, 2) in (row, col) pixels, density in seeds per pixel^2).
    """
    h, w = _check_shape(shape)
    if not isinstance(n_grains, (int, np.integer)) or isinstance(n_grains, bool) or n_grains < 1:
        raise ValueError(f"n_grains must be a positive int, got {n_grains!r}")
    if not 0 <= margin <= 1:
        raise ValueError(f"margin must be in [0, 1], got {margin!r}")
    rng = np.random.default_rng(rng)
    density = n_grains / float(h * w)
    ph, pw = margin * h, margin * w
    area = (h + 2 * ph) * (w + 2 * pw)
    n = max(1, int(round(density * area)))
    seeds = rng.uniform((-ph, -pw), (h + ph, w + pw), size=(n, 2))
    return seeds, density


def _lattice_window(shape: Shape, rows: float, cols: float, offset: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray]:
    h, w = shape
    r = np.arange(np.floor(-offset[0] / rows) - 2, np.ceil((h - offset[0]) / rows) + 2)
    c = np.arange(np.floor(-offset[1] / cols) - 2, np.ceil((w - offset[1]) / cols) + 2)
    return r, c


def square_seeds(shape: Sequence[int], cell_size: float, offset: Tuple[float, float] = (0.0, 0.0)) -> Tuple[np.ndarray, float]:
    """Seeds of a square tiling of ``cell_size`` px cells whose corners sit at ``offset + k * cell_size``.

    Cell ``(i, j)`` covers pixel rows ``offset[0] + i a .. offset[0] + (i + 1) a - 1`` exactly (pixel
    centres are integers, seeds sit at cell centres).  Returns (seeds, density = 1 / a^2).
    """
    hw = _check_shape(shape)
    a = _positive(cell_size, "cell_size")
    r, c = _lattice_window(hw, a, a, offset)
    rr, cc = np.meshgrid(r, c, indexing="ij")
    seeds = np.stack([offset[0] + rr * a + (a - 1) / 2, offset[1] + cc * a + (a - 1) / 2], -1).reshape(-1, 2)
    return seeds, 1.0 / (a * a)


def hexagonal_seeds(shape: Sequence[int], spacing: float, offset: Tuple[float, float] = (0.0, 0.0)) -> Tuple[np.ndarray, float]:
    """Seeds of a triangular lattice (rows ``spacing * sqrt(3) / 2`` apart, odd rows shifted by half).

    Its Voronoi cells are regular hexagons with side ``spacing / sqrt(3)`` and area
    ``sqrt(3) / 2 * spacing^2``; their edges run at 30, 90 and 150 degrees.  Returns (seeds, density).
    """
    hw = _check_shape(shape)
    d = _positive(spacing, "spacing")
    dy = d * np.sqrt(3.0) / 2
    r, c = _lattice_window(hw, dy, d, offset)
    rr, cc = np.meshgrid(r, c, indexing="ij")
    shift = (rr.astype(np.int64) % 2) * d / 2
    seeds = np.stack([offset[0] + rr * dy, offset[1] + cc * d + shift], -1).reshape(-1, 2)
    return seeds, 1.0 / (np.sqrt(3.0) / 2 * d * d)


def _pair_jitter(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic number in [0, 1) per unordered seed pair, so each boundary keeps one width."""
    lo, hi = np.minimum(i, j).astype(np.uint64), np.maximum(i, j).astype(np.uint64)
    x = lo * np.uint64(0x9E3779B97F4A7C15) ^ (hi + np.uint64(salt)) * np.uint64(0xC2B2AE3D27D4EB4F)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def tessellate(
    shape: Sequence[int],
    seeds: np.ndarray,
    boundary_width: float = 8.0,
    width_jitter: float = 0.0,
    salt: int = 0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voronoi tessellation of the pixel grid: (labels int32, mask uint8, distance to boundary float32).

    ``labels`` holds 1..N (N = cells that reach the image), relabelled in seed order; ``mask`` is 1 in
    grain interiors and 0 within ``boundary_width / 2`` of a cell edge (the perpendicular distance to
    the bisector with each of the two next-nearest seeds, which is exact away from the rare pixels whose
    third neighbour cell is closer still).  ``width_jitter`` in [0, 1) varies each boundary's width by up
    to that fraction (deterministic per seed pair and ``salt``).
    """
    h, w = _check_shape(shape)
    seeds = np.asarray(seeds, dtype=np.float64)
    if seeds.ndim != 2 or seeds.shape[1] != 2 or len(seeds) < 1:
        raise ValueError(f"seeds must be an (N, 2) array of (row, col) positions, got shape {seeds.shape}")
    width = float(boundary_width)
    if not width >= 0:
        raise ValueError(f"boundary_width must be >= 0, got {boundary_width!r}")
    if not 0 <= width_jitter < 1:
        raise ValueError(f"width_jitter must be in [0, 1), got {width_jitter!r}")
    from scipy.spatial import cKDTree

    yy, xx = np.mgrid[0:h, 0:w]
    points = np.stack([yy.ravel(), xx.ravel()], -1).astype(np.float64)
    k = min(3, len(seeds))
    dist, idx = cKDTree(seeds).query(points, k=k)
    if k == 1:
        dist, idx = dist[:, None], idx[:, None]
    nearest = idx[:, 0]
    bdist = np.full(len(points), np.inf)
    s1 = seeds[nearest]
    for j in range(1, k):
        sep = np.linalg.norm(seeds[idx[:, j]] - s1, axis=1)
        d_bis = (dist[:, j] ** 2 - dist[:, 0] ** 2) / (2.0 * np.maximum(sep, 1e-12))
        half = width / 2 * (1.0 + width_jitter * (2 * _pair_jitter(nearest, idx[:, j], salt) - 1))
        bdist = np.minimum(bdist, d_bis - half)
    used, labels = np.unique(nearest, return_inverse=True)
    labels = (labels + 1).astype(np.int32).reshape(h, w)
    mask = (bdist >= 0).astype(np.uint8).reshape(h, w)
    return labels, mask, bdist.reshape(h, w).astype(np.float32)


def _smooth_noise(shape: Shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian-filtered noise; wide filters run on a coarse grid, then upsample (fast)."""
    from scipy.ndimage import gaussian_filter, zoom

    step = max(1, int(sigma // 4))
    coarse = (shape[0] // step + 2, shape[1] // step + 2)
    n = gaussian_filter(rng.standard_normal(coarse), sigma / step, mode="wrap")
    if step > 1:
        n = zoom(n, step, order=1)[: shape[0], : shape[1]]
    else:
        n = n[: shape[0], : shape[1]]
    return n / (n.std() + 1e-12)


def render_micrograph(
    labels: np.ndarray,
    mask: np.ndarray,
    boundary_distance: Optional[np.ndarray] = None,
    rng: RngLike = None,
    noise: float = 0.04,
    speckle: float = 0.5,
    twins: float = 0.3,
    blur: float = 1.0,
    color: bool = False,
) -> np.ndarray:
    """Draw an optical-micrograph-like uint8 image for a (labels, mask) pair.

    Grains get their own bright tone with a slow shading; boundaries are dark; ``speckle`` (0..1) adds
    dark etch pits that cluster near boundaries (as in etched 316L, and *not* boundary in the mask);
    ``twins`` is the fraction of grains crossed by a thin straight annealing-twin line (also not in the
    mask); then a Gaussian ``blur`` (px) and additive noise (``noise``, in units of full scale).
    ``color`` gives a warm-tinted RGB image, else grey.
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    labels = np.asarray(labels)
    mask = np.asarray(mask)
    if labels.ndim != 2 or mask.shape != labels.shape:
        raise ValueError(f"labels and mask must be (H, W) arrays of one shape, got {labels.shape} and {mask.shape}")
    rng = np.random.default_rng(rng)
    h, w = labels.shape
    n = int(labels.max()) + 1
    tone = rng.uniform(0.62, 0.88, size=n)
    img = tone[labels] + 0.04 * _smooth_noise((h, w), max(h, w) / 8, rng)
    if boundary_distance is None:
        boundary_distance = distance_transform_edt(mask > 0)
    dist = np.maximum(np.asarray(boundary_distance, dtype=np.float64), 0.0)
    if speckle > 0:
        pits = _smooth_noise((h, w), 1.2, rng)
        near = np.exp(-dist / (6.0 + 10.0 * rng.uniform()))
        thresh = 2.2 - 1.6 * speckle * near
        img = np.where((pits > thresh) & (mask > 0), 0.12 + 0.1 * rng.uniform(size=(h, w)), img)
    if twins > 0:
        # one straight line through (near) the centroid of a ``twins`` fraction of the grains
        yy, xx = np.mgrid[0:h, 0:w]
        count = np.maximum(np.bincount(labels.ravel(), minlength=n), 1)
        cy = np.bincount(labels.ravel(), yy.ravel(), minlength=n) / count
        cx = np.bincount(labels.ravel(), xx.ravel(), minlength=n) / count
        angle = rng.uniform(0, np.pi, size=n)
        shift = rng.normal(0, 0.2, size=n) * np.sqrt(count)
        has = (rng.uniform(size=n) < twins) & (count >= 50)
        a = angle[labels]
        d = np.abs((yy - cy[labels]) * np.cos(a) - (xx - cx[labels]) * np.sin(a) - shift[labels])
        img = np.where(has[labels] & (d < 0.8) & (mask > 0), img - 0.25, img)
    img = np.where(mask > 0, img, 0.08 + 0.05 * rng.uniform(size=(h, w)))
    if blur > 0:
        img = gaussian_filter(img, blur)
    img = img + noise * rng.standard_normal((h, w))
    if color:
        img = np.stack([img * 1.0, img * 0.93, img * 0.82], -1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _draw_lines(shape: Shape, n: int, rng: np.random.Generator, width: Tuple[float, float]) -> np.ndarray:
    """A float (H, W) map in [0, 1] of ``n`` random straight lines (soft-edged, ``width`` px range)."""
    h, w = shape
    out = np.zeros((h, w))
    if n <= 0:
        return out
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a = rng.uniform(0, np.pi)
        half = rng.uniform(*width) / 2
        d = np.abs((yy - cy) * np.cos(a) - (xx - cx) * np.sin(a))
        length = rng.uniform(0.3, 1.5) * max(h, w)
        along = np.abs((yy - cy) * np.sin(a) + (xx - cx) * np.cos(a))
        out = np.maximum(out, np.clip(half + 0.5 - d, 0, 1) * (along < length / 2))
    return out


def _draw_particles(shape: Shape, n: int, rng: np.random.Generator, radius: Tuple[float, float],
                    near: Optional[np.ndarray] = None) -> np.ndarray:
    """A float (H, W) map in [0, 1] of ``n`` soft discs; with ``near`` (a weight map) their centres are
    drawn in proportion to it (precipitates on boundaries)."""
    h, w = shape
    out = np.zeros((h, w))
    if n <= 0:
        return out
    if near is not None and near.sum() > 0:
        flat = rng.choice(h * w, size=n, p=(near / near.sum()).ravel())
        centres = np.stack([flat // w, flat % w], -1).astype(np.float64)
    else:
        centres = rng.uniform((0, 0), (h, w), size=(n, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    for (cy, cx), r in zip(centres, rng.uniform(*radius, size=n)):
        y0, y1 = int(max(cy - r - 2, 0)), int(min(cy + r + 3, h))
        x0, x1 = int(max(cx - r - 2, 0)), int(min(cx + r + 3, w))
        d = np.hypot(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx)
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], np.clip(r + 0.5 - d, 0, 1))
    return out


def render_randomized(
    labels: np.ndarray,
    mask: np.ndarray,
    boundary_distance: Optional[np.ndarray] = None,
    rng: RngLike = None,
    color: Optional[bool] = None,
) -> np.ndarray:
    """A domain-randomised uint8 micrograph for a (labels, mask) pair (pre-training for other materials).

    Everything the real images vary in is drawn at random: contrast polarity (dark boundaries as in
    etched optical images, or bright ones as in SEM, half the time each), the boundary's contrast and
    soft edge, grain tones, a per-grain oriented texture, slow shading, scratches across the image,
    particles (dark or bright, on the boundaries or anywhere), blur, noise, gamma, and grey or tinted
    colour (``color`` None: random).  Scratches and particles are not boundary: the mask is unchanged.
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    labels, mask = np.asarray(labels), np.asarray(mask)
    if labels.ndim != 2 or mask.shape != labels.shape:
        raise ValueError(f"labels and mask must be (H, W) arrays of one shape, got {labels.shape} and {mask.shape}")
    rng = np.random.default_rng(rng)
    h, w = labels.shape
    n = int(labels.max()) + 1
    if boundary_distance is None:
        boundary_distance = distance_transform_edt(mask > 0)
    dist = np.maximum(np.asarray(boundary_distance, dtype=np.float64), 0.0)
    # grains: a tone per grain, an oriented texture per grain, slow shading
    centre, spread = rng.uniform(0.35, 0.65), rng.uniform(0.02, 0.25)
    tone = np.clip(centre + spread * rng.uniform(-1, 1, size=n), 0, 1)
    img = tone[labels]
    if rng.uniform() < 0.7:
        yy, xx = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, np.pi, size=n)[labels]
        period = rng.uniform(3.0, 20.0)
        img = img + rng.uniform(0.0, 0.08) * np.sin(2 * np.pi * ((yy * np.cos(angle) + xx * np.sin(angle)) / period
                                                                  + rng.uniform(0, 1, size=n)[labels]))
    img = img + rng.uniform(0.0, 0.08) * _smooth_noise((h, w), max(h, w) / rng.uniform(2, 10), rng)
    img = img + rng.uniform(0.0, 0.05) * _smooth_noise((h, w), rng.uniform(0.8, 3.0), rng)
    # boundaries: dark or bright, with a soft edge into the grain
    bright = rng.uniform() < 0.5
    contrast = rng.uniform(0.25, 0.6) * (1 if bright else -1)
    edge = rng.uniform(0.5, 3.0)
    band = np.where(mask > 0, np.exp(-dist / edge) * rng.uniform(0.0, 0.6), 1.0)
    img = img + contrast * band
    # scratches and particles: not boundary (the mask does not change)
    scratches = _draw_lines((h, w), int(rng.poisson(rng.uniform(0, 3))), rng, (0.8, 2.5))
    img = img + rng.choice([-1, 1]) * rng.uniform(0.1, 0.35) * scratches
    n_part = int(rng.poisson(rng.uniform(0, 40) * h * w / 256 ** 2))
    near = np.exp(-dist / 3.0) if rng.uniform() < 0.5 else None
    particles = _draw_particles((h, w), n_part, rng, (1.0, rng.uniform(2.0, 7.0)), near)
    img = np.where(particles > 0, img * (1 - particles) + particles * rng.uniform(0, 1), img)
    # optics and detector
    img = gaussian_filter(img, rng.uniform(0.0, 1.8))
    img = img + rng.uniform(0.0, 0.08) * rng.standard_normal((h, w))
    lo, hi = np.percentile(img, [0.5, 99.5])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) ** np.exp(rng.uniform(-0.4, 0.4))
    if color if color is not None else rng.uniform() < 0.5:
        tint = 1.0 - rng.uniform(0.0, 0.25, size=3)
        img = img[..., None] * tint
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_micrograph(
    shape: Sequence[int] = (256, 256),
    n_grains: int = 40,
    boundary_width: float = 8.0,
    lattice: str = "voronoi",
    cell_size: Optional[float] = None,
    offset: Tuple[float, float] = (0.0, 0.0),
    width_jitter: float = 0.3,
    seed: RngLike = None,
    style: str = "optical",
    **render_kw,
) -> SyntheticMicrograph:
    """A synthetic micrograph with exact mask, labels and grain count.

    ``lattice="voronoi"``: ``n_grains`` random grains expected in the image; ``"hexagonal"`` /
    ``"square"``: a regular tiling with ``cell_size`` px seed spacing / side (``offset`` shifts it).
    ``style="optical"``: :func:`render_micrograph` (``render_kw``: noise, speckle, twins, blur, color);
    ``"randomized"``: :func:`render_randomized` (domain randomisation; ``render_kw``: color).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    hw = _check_shape(shape)
    rng = np.random.default_rng(seed)
    if lattice == "voronoi":
        seeds, density = random_seeds(hw, n_grains, rng)
    elif lattice in ("hexagonal", "square"):
        if cell_size is None:
            raise ValueError(f"cell_size is required for lattice={lattice!r}")
        make = hexagonal_seeds if lattice == "hexagonal" else square_seeds
        seeds, density = make(hw, cell_size, offset)
    else:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    salt = int(rng.integers(1 << 31))
    labels, mask, bdist = tessellate(hw, seeds, boundary_width, width_jitter if lattice == "voronoi" else 0.0, salt)
    render = render_micrograph if style == "optical" else render_randomized
    image = render(labels, mask, bdist, rng, **render_kw)
    n_visible = len(np.unique(labels[mask > 0]))
    return SyntheticMicrograph(image, mask, labels, n_visible, seeds, density)


class SyntheticGrainDataset:
    """A torch Dataset of synthetic Voronoi micrographs for pre-training: item i -> (image, mask).

    ``image`` is a float32 (1 or 3, H, W) tensor min-max normalised to [0, 1] (the models'
    preprocessing), ``mask`` a float32 (1, H, W) {0, 1} tensor (1 = grain interior).  Item ``i`` is the
    same on every call (seeded by ``seed`` and ``i``); grain counts and boundary widths are drawn from
    the given ranges.
    """

    def __init__(
        self,
        length: int = 800,
        size: Sequence[int] = (256, 256),
        n_grains: Tuple[int, int] = (15, 60),
        boundary_width: Tuple[float, float] = (4.0, 10.0),
        color: Optional[bool] = True,
        seed: int = 0,
        style: str = "optical",
    ) -> None:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        self.size = _check_shape(size)
        if not (1 <= n_grains[0] <= n_grains[1]):
            raise ValueError(f"n_grains must be a (low, high) range of positive ints, got {n_grains!r}")
        if not (0 <= boundary_width[0] <= boundary_width[1]):
            raise ValueError(f"boundary_width must be a (low, high) range, got {boundary_width!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.length, self.n_grains, self.boundary_width = length, n_grains, boundary_width
        self.color = None if color is None else bool(color)
        self.seed, self.style = int(seed), style

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> SyntheticMicrograph:
        """The full :class:`SyntheticMicrograph` behind item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = np.random.default_rng([self.seed, index])
        return make_micrograph(
            self.size,
            n_grains=int(rng.integers(self.n_grains[0], self.n_grains[1] + 1)),
            boundary_width=float(rng.uniform(*self.boundary_width)),
            seed=rng,
            style=self.style,
            color=self.color if self.style == "randomized" else bool(self.color),
        )

    def __getitem__(self, index: int):
        import torch

        from .transforms import normalize_image, to_chw_tensor

        s = self.sample(index)
        image = normalize_image(to_chw_tensor(s.image), "minmax")
        return image, torch.from_numpy(s.mask.astype(np.float32))[None]


#: ``--data synthetic:N[:HxW]``: N domain-randomised training images (and N // 10, at least 1, for validation).
SYNTHETIC_PREFIX = "synthetic:"


def parse_synthetic_spec(spec: str) -> Optional[Tuple[int, Tuple[int, int]]]:
    """``"synthetic:N"`` or ``"synthetic:N:HxW"`` -> (N, (H, W)); None for anything else (a folder).

    ValueError when it starts with ``synthetic:`` but does not parse."""
    if not isinstance(spec, str) or not spec.startswith(SYNTHETIC_PREFIX):
        return None
    parts = spec[len(SYNTHETIC_PREFIX):].split(":")
    try:
        n = int(parts[0])
        if len(parts) == 1:
            size = (256, 256)
        elif len(parts) == 2:
            vals = [int(v) for v in parts[1].lower().split("x")]
            size = (vals[0], vals[-1]) if len(vals) in (1, 2) else None
        else:
            size = None
    except ValueError:
        size = None
        n = 0
    if size is None or n < 1 or min(size) < 16:
        raise ValueError(f"synthetic data must be given as synthetic:N or synthetic:N:HxW (N >= 1, sides >= 16), "
                         f"got {spec!r}")
    return n, size


class SyntheticSegmentationDataset(PreprocessedItems):
    """Domain-randomised synthetic micrographs with the item interface of
    :class:`~grainseg.data.SegmentationDataset` (what the trainer reads): ``image`` float32
    (in_chans, H', W') through :func:`~grainseg.data.transforms.preprocess_image`, ``mask`` (1, H', W'),
    ``name``, ``index``; augmentation and crops seeded by (seed, epoch, index).  Item ``i`` is rendered
    from ``(render_seed, i)``: the same picture every epoch, augmented differently.
    """

    layout = "synthetic"
    threshold = 127
    polarity = "grain"

    def __init__(self, length: int, size: Sequence[int] = (256, 256), *, render_seed: int = 0,
                 preprocessing=None, in_chans: int = 3, augment=None, crop_size=None, seed: int = 0,
                 n_grains: Tuple[int, int] = (10, 80), boundary_width: Tuple[float, float] = (2.0, 12.0)) -> None:
        self.source = SyntheticGrainDataset(length, size, n_grains=n_grains, boundary_width=boundary_width,
                                            color=None, seed=render_seed, style="randomized")
        self.size = self.source.size
        self.names = [f"synthetic_{render_seed}_{i}" for i in range(length)]
        self.preprocessing = preprocessing
        self.in_chans, self.augment = in_chans, augment
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.seed, self.epoch = int(seed), 0

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def mask_path(self, index: int) -> str:
        return self.names[index]

    def check_pairs(self) -> dict:
        """Generated masks are exact: nothing to report."""
        return {"empty": [], "full": [], "inverted": [], "boundary_fraction": {}}

    def common_image_size(self) -> List[int]:
        return list(self.size)

    def read_raw(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The rendered image and its {0, 1} grain-interior mask (no preprocessing), as
        :meth:`grainseg.data.SegmentationDataset.read_raw`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        s = self.source.sample(index)
        return s.image, s.mask

    def __getitem__(self, index: int):
        return self.item(index)
