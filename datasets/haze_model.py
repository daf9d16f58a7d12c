"""A hazy imaging model with several real-world degradations (KA-Net's thesis: synthetic training haze
lacks them). Images are H×W×3 float32 in [0, 1], depth H×W in [0, 1] (1 = farthest).

The factors, applied in the order a camera meets them, each switchable and drawn per image from a range:

    1. haze        I = J·t + A·(1 − t),  t = exp(−β·m(x)·depth)
                   β ∈ beta; m(x) = max(0, 1 + s·n(x)) a non-uniform density, n a smooth random field in
                   [−1, 1] (bicubic upsampling of a `density_grid`² random grid), s ∈ density_variation
                   (`nonuniform_density`)
    2. airlight    A(x) = a·(1 + c)·(1 + g·⟨x, u⟩): brightness a ∈ airlight; a colour cast c, per channel
                   ∈ ±airlight_tint (`coloured_airlight`); a linear gradient of strength g ∈ airlight_gradient
                   in a random direction u across the normalised image plane (`varying_airlight`)
    3. low light   I ← e·I, exposure e ∈ exposure, then I ← I^γ, γ ∈ gamma (`low_light`): darker, with
                   midtones crushed as an under-exposed camera response does
    4. blur        Gaussian defocus, σ ∈ defocus_sigma pixels, or linear motion blur over motion_length
                   pixels at a random angle, half of the images each (`blur`)
    5. noise       signal-dependent sensor noise: I + N(0, k·I + r²), shot gain k ∈ shot_noise, read noise
                   r ∈ read_noise (`noise`)
    6. JPEG        8-bit quantisation and JPEG compression at quality q ∈ jpeg_quality (`jpeg`)

Everything a draw needs is in its `HazeParameters`, including the seeds of the random fields, so that
`apply(clear, depth, params)` is a pure function and `synthesize(…, rng)` is reproducible from the seed.
With every switch off except haze and a flat airlight, this is the classic model of RESIDE.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class HazeModel:
    """The factor switches and the ranges each parameter is drawn from (uniformly, or log-uniformly where
    marked). Construct from a config mapping: `HazeModel(**config)`."""

    beta: tuple[float, float] = (0.6, 2.2)
    nonuniform_density: bool = True
    density_variation: tuple[float, float] = (0.0, 0.6)
    density_grid: int = 4
    airlight: tuple[float, float] = (0.7, 1.0)
    coloured_airlight: bool = True
    airlight_tint: float = 0.08
    varying_airlight: bool = True
    airlight_gradient: tuple[float, float] = (0.0, 0.25)
    low_light: bool = False
    exposure: tuple[float, float] = (0.35, 0.9)
    gamma: tuple[float, float] = (1.0, 1.6)
    blur: bool = True
    defocus_sigma: tuple[float, float] = (0.3, 1.5)
    motion_length: tuple[float, float] = (3.0, 9.0)
    noise: bool = True
    shot_noise: tuple[float, float] = (1e-4, 4e-3)   # log-uniform
    read_noise: tuple[float, float] = (1e-3, 1e-2)   # log-uniform
    jpeg: bool = True
    jpeg_quality: tuple[int, int] = (40, 95)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (list, tuple)):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"haze model: {field.name} must be a range [low, high], got {value}")
                setattr(self, field.name, tuple(value))
        if not (1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError(f"haze model: jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
        if self.beta[0] < 0 or self.density_grid < 2:
            raise ValueError("haze model: beta must be ≥ 0 and density_grid ≥ 2")

    def sample(self, rng: np.random.Generator) -> HazeParameters:
        """Draw the parameters of one image. Every value is drawn whether its factor is on or not (a disabled
        factor then gets its neutral value), so switching one factor leaves the others' draws unchanged."""
        def log_uniform(bounds):
            return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))

        beta, density, airlight = rng.uniform(*self.beta), rng.uniform(*self.density_variation), rng.uniform(*self.airlight)
        tint = rng.uniform(-self.airlight_tint, self.airlight_tint, 3)
        gradient, angle = rng.uniform(*self.airlight_gradient), rng.uniform(0, 2 * np.pi)
        exposure, gamma = rng.uniform(*self.exposure), rng.uniform(*self.gamma)
        motion, sigma = rng.random() < 0.5, rng.uniform(*self.defocus_sigma)
        length, motion_angle = rng.uniform(*self.motion_length), rng.uniform(0, 180)
        shot, read = log_uniform(self.shot_noise), log_uniform(self.read_noise)
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        density_seed, noise_seed = (int(v) for v in rng.integers(2 ** 31, size=2))
        return HazeParameters(
            beta=float(beta),
            density_variation=float(density) if self.nonuniform_density else 0.0,
            density_grid=self.density_grid,
            density_seed=density_seed,
            airlight=float(airlight),
            airlight_tint=tuple(tint.tolist()) if self.coloured_airlight else (0.0, 0.0, 0.0),
            airlight_gradient=float(gradient) if self.varying_airlight else 0.0,
            airlight_direction=(float(np.cos(angle)), float(np.sin(angle))),
            exposure=float(exposure) if self.low_light else 1.0,
            gamma=float(gamma) if self.low_light else 1.0,
            defocus_sigma=float(sigma) if self.blur and not motion else 0.0,
            motion_length=float(length) if self.blur and motion else 0.0,
            motion_angle=float(motion_angle),
            shot_noise=shot if self.noise else 0.0,
            read_noise=read if self.noise else 0.0,
            noise_seed=noise_seed,
            jpeg_quality=quality if self.jpeg else None,
        )

    def synthesize(self, clear: np.ndarray, depth: np.ndarray | None,
                   rng: np.random.Generator) -> tuple[np.ndarray, HazeParameters]:
        """(hazy image, the parameters drawn for it); `depth` None uses `vertical_depth_proxy`."""
        params = self.sample(rng)
        return apply(clear, depth, params), params


@dataclass(frozen=True)
class HazeParameters:
    """One image's draw; neutral values (0, 1, None) switch a factor off."""

    beta: float
    density_variation: float = 0.0
    density_grid: int = 4
    density_seed: int = 0
    airlight: float = 1.0
    airlight_tint: tuple[float, float, float] = (0.0, 0.0, 0.0)
    airlight_gradient: float = 0.0
    airlight_direction: tuple[float, float] = (1.0, 0.0)
    exposure: float = 1.0
    gamma: float = 1.0
    defocus_sigma: float = 0.0
    motion_length: float = 0.0
    motion_angle: float = 0.0
    shot_noise: float = 0.0
    read_noise: float = 0.0
    noise_seed: int = 0
    jpeg_quality: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def add_haze(clear: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """The classic atmospheric scattering model alone (grey, uniform airlight; uniform density)."""
    return apply(clear, depth, HazeParameters(beta=beta, airlight=airlight))


def vertical_depth_proxy(height: int, width: int) -> np.ndarray:
    """Depth 1 at the top row falling linearly to 0 at the bottom row (far scene above the horizon)."""
    return np.repeat(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None], width, axis=1)


def smooth_field(height: int, width: int, grid: int, seed: int) -> np.ndarray:
    """A low-frequency random field in [−1, 1]: a grid×grid uniform grid upsampled bicubically."""
    coarse = np.random.default_rng(seed).uniform(-1, 1, (grid, grid)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), -1, 1)


def transmission_map(depth: np.ndarray, params: HazeParameters) -> np.ndarray:
    density = np.ones_like(depth)
    if params.density_variation > 0:
        field = smooth_field(*depth.shape, params.density_grid, params.density_seed)
        density = np.maximum(0.0, 1.0 + params.density_variation * field)
    return np.exp(-params.beta * density * depth).astype(np.float32)


def airlight_map(height: int, width: int, params: HazeParameters) -> np.ndarray:
    """H×W×3 atmospheric light."""
    colour = params.airlight * (1.0 + np.asarray(params.airlight_tint, np.float32))
    ys, xs = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32),
                         indexing="ij")
    gradient = 1.0 + params.airlight_gradient * (params.airlight_direction[0] * xs + params.airlight_direction[1] * ys)
    return np.clip(gradient[..., None] * colour, 0.0, 1.0).astype(np.float32)


def motion_kernel(length: float, angle_degrees: float) -> np.ndarray:
    size = int(np.ceil(length)) | 1  # odd
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle_degrees, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (size, size))
    return kernel / kernel.sum()


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    rgb8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def apply(clear: np.ndarray, depth: np.ndarray | None, params: HazeParameters) -> np.ndarray:
    """The degraded image of `clear` (H×W×3 in [0, 1]) for one draw of parameters; see the module docstring."""
    height, width = clear.shape[:2]
    depth = vertical_depth_proxy(height, width) if depth is None else depth.astype(np.float32)
    t = transmission_map(depth, params)[..., None]
    image = clear.astype(np.float32) * t + airlight_map(height, width, params) * (1.0 - t)
    if params.exposure != 1.0 or params.gamma != 1.0:
        image = np.clip(params.exposure * image, 0, 1) ** params.gamma
    if params.defocus_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), params.defocus_sigma, borderType=cv2.BORDER_REFLECT)
    if params.motion_length > 0:
        image = cv2.filter2D(image, -1, motion_kernel(params.motion_length, params.motion_angle),
                             borderType=cv2.BORDER_REFLECT)
    if params.shot_noise > 0 or params.read_noise > 0:
        std = np.sqrt(params.shot_noise * np.clip(image, 0, 1) + params.read_noise ** 2)
        image = image + std * np.random.default_rng(params.noise_seed).standard_normal(image.shape, dtype=np.float32)
    image = np.clip(image, 0.0, 1.0)
    if params.jpeg_quality is not None:
        image = jpeg_compress(image, params.jpeg_quality)
    return image.astype(np.float32)
