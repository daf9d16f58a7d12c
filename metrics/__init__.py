"""Image-quality measures, all on images in [0, 1] or 8-bit RGB.

    full_reference   PSNR and SSIM exactly as the field's evaluation protocol computes them
    no_reference     NIQE, BRISQUE, PIQE and entropy, for real hazy photos without ground truth
    fade             FADE, the fog density real-world dehazing papers report
    real_haze        the five no-reference measures in one table, as evaluate_real.py reports them
    statistics       comparing methods over the same images, and runs (seeds) of one method
"""
from .fade import fade
from .full_reference import psnr, ssim, ssim_downsample_ratio
from .no_reference import brisque, entropy, niqe, piqe

__all__ = ["brisque", "entropy", "fade", "niqe", "piqe", "psnr", "ssim", "ssim_downsample_ratio"]
