"""Running a trained network on photos: `Dehazer` / `dehaze` (any size, the language prior computed per photo)
and tiled inference with image-wide statistics (`tiling`)."""
from .dehazer import Dehazer, as_rgb_array, dehaze
from .tiling import tiled_forward

__all__ = ["Dehazer", "as_rgb_array", "dehaze", "tiled_forward"]
