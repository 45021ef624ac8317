"""darknet_py: Darknet .cfg/.weights files as PyTorch modules, with Darknet's numbers."""
from .detect import detect
from .errors import CfgError, DarknetError, ImageError, WeightsError
from .image import letterbox, load_image
from .model import Darknet, load
from .weights import Header

__all__ = ["CfgError", "Darknet", "DarknetError", "detect", "Header", "ImageError", "WeightsError",
           "letterbox", "load", "load_image"]
__version__ = "0.1.0"
