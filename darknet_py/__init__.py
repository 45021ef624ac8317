"""darknet_py: Darknet .cfg/.weights files as PyTorch modules, with Darknet's numbers."""
from . import coco, draw
from .detect import detect
from .errors import CfgError, DarknetError, ImageError, WeightsError
from .image import letterbox, load_image
from .memory import keep_freed_memory
from .model import Darknet, load
from .postprocess import Detections
from .weights import Header

__all__ = ["CfgError", "Darknet", "DarknetError", "Detections", "detect", "Header", "ImageError", "WeightsError",
           "coco", "draw", "keep_freed_memory", "letterbox", "load", "load_image"]
__version__ = "0.1.0"
