"""adasmooth: mixing an accurate classifier g with a robust classifier h (Bai et al., adaptive smoothing)."""
import logging

from .zoo import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
