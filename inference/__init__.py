"""Running a trained network on photos: `Dehazer` / `dehaze` (any size, the language prior computed per photo)
and tiled inference with image-wide statistics (`tiling`)."""
from .dehazer import AMP_DTYPES, MAX_WHOLE_PIXELS_CPU, Dehazer, as_rgb_array, dehaze
from .tiling import tiled_forward

__all__ = ["AMP_DTYPES", "MAX_WHOLE_PIXELS_CPU", "Dehazer", "as_rgb_array", "dehaze", "tiled_forward"]
