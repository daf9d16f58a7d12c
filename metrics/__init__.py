"""Image-quality measures, all on images in [0, 1].

    full_reference   PSNR and SSIM exactly as the field's evaluation protocol computes them
    no_reference     NIQE, BRISQUE and dark-channel haze density, for real hazy photos without ground truth
    statistics       comparing methods over the same images, and runs (seeds) of one method
"""
from .full_reference import psnr, ssim, ssim_downsample_ratio

__all__ = ["psnr", "ssim", "ssim_downsample_ratio"]
