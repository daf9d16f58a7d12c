"""torch.hub entry points, one per registered model:

    net = torch.hub.load("path/to/this/repository", "mixcl_s", source="local", checkpoint="runs/.../best.pt")
    net = torch.hub.load("path/to/this/repository", "mixdehazenet_s", source="local", checkpoint="MixDehazeNet-s.pth")
    net = torch.hub.load("path/to/this/repository", "ka_net", source="local")        # random weights, training mode

With `checkpoint` (this project's, a model folder or Hugging Face repository id from scripts/export_pretrained.py,
or an official MixDehazeNet / MixCLDehazeNet / KA-Net file) the network comes in eval mode with those weights, as
models.load_model gives it; other keyword arguments go to the constructor.
"""
from models import build_model, list_models, load_model

dependencies = ["torch", "torchvision", "timm", "open_clip", "cv2"]


def _entry_point(name: str):
    def entry_point(checkpoint: str | None = None, **kwargs):
        return load_model(checkpoint, name) if checkpoint is not None else build_model(name, **kwargs)
    entry_point.__name__ = name.replace("-", "_")
    entry_point.__doc__ = f"The {name} network; with `checkpoint`, its trained weights in eval mode."
    return entry_point


for _name in list_models():  # mixcl_s, mixdehazenet_t, ka_net, ...
    globals()[_name.replace("-", "_")] = _entry_point(_name)
