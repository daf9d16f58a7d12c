from .MixDehazeNet import  MixDehazeNet_s
