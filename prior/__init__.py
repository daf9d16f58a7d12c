"""The language prior of MixCLDehazeNet: which class (indoor / outdoor) an image shows and the text feature the
network is conditioned on.

    clip      CLIP's zero-shot classifier (open_clip) and where its weights come from
    classes   classes known without CLIP: domain-label files, --label / --labels, one-hot probabilities, the
              text feature of a class
    cache     CLIP's result for a folder of images, computed once and kept in one cache file
    network   the prior of a network as it was trained: for one photo at a time (inference)

Prior modes (`prior.mode` of a config; the settings are utils.config.PriorConfig):

    clip       the text feature of CLIP's arg-max class (MixCLDehazeNet)
    clip-soft  the probability-weighted mix of the class text features
    labels     a known class per image (domain_labels.csv); the network learns one embedding per class
    none       no prior: the plain backbone

Attaching a prior to the samples of a dataset is datasets/prior.py's work.
"""
from .cache import (
    compute_prior_cache,
    ensure_prior_cache,
    image_list_fingerprint,
    prior_cache_path,
    save_prior_cache,
    stale_reason,
)
from .classes import (
    DOMAIN_LABELS_FILE,
    PRIOR_MODES,
    PriorError,
    given_classes,
    one_hot,
    read_domain_labels,
    text_prior,
)
from .clip import ClipPrior, clip_metadata, load_clip
from .network import photo_prior

__all__ = ["DOMAIN_LABELS_FILE", "PRIOR_MODES", "ClipPrior", "PriorError", "clip_metadata", "compute_prior_cache",
           "ensure_prior_cache", "given_classes", "image_list_fingerprint", "load_clip", "one_hot", "photo_prior",
           "prior_cache_path", "read_domain_labels", "save_prior_cache", "stale_reason", "text_prior"]
