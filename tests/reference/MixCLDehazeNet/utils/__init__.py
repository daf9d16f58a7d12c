from .common import AverageMeter, ListAverageMeter, read_img, write_img, hwc_to_chw, chw_to_hwc, read_npy
from .data_parallel import BalancedDataParallel