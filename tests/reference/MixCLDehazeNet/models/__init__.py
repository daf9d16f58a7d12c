from .MixDehazeNet import  MixDehazeNet_s
from .MixDehazeNet import  MixDehazeNet_l
from .MixDehazeNet import  MixDehazeNet_b
from .MixDehazeNet import  MixDehazeNet_t