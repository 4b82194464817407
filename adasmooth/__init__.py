"""adasmooth: mixing an accurate classifier g with a robust classifier h (Bai et al., adaptive smoothing)."""
import logging

from .mixing import MixedClassifier
from .runtime import __version__
from .mixing_net import MixingNetwork
from .adaptive import AdaptiveMixedClassifier
from . import learned  # noqa: E402,F401  (registers the learned mixers' names with the zoo)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["AdaptiveMixedClassifier", "MixingNetwork", "MixedClassifier", "__version__"]
