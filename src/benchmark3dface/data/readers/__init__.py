"""Readers for real face datasets, each a ``torch.utils.data.Dataset`` of ``Sample`` records.

``READERS`` maps a name to its class; ``get_reader(name)(root, split=..., image_size=...,
strict=...)`` builds one. Dataset cards (layout, splits, protocol, how to obtain) are in
``datasets/<name>.md``.

========== ========================== =========================================
name       class                      splits
========== ========================== =========================================
aflw2000   :class:`AFLW2000Reader`    test (all)
300w_lp    :class:`W300LPReader`      train, val, all
micc       :class:`MICCFlorenceReader` cooperative, indoor, outdoor
celeba     :class:`CelebAReader`      train, val, test, all
now        :class:`NoWReader`         val, test, all
image_folder :class:`ImageFolderReader` all
frgc       :class:`FRGCReader`        all (.abs range images)
pixelface  :class:`PixelFaceReader`   train, test, all (left/front/right + scan)
========== ========================== =========================================
"""

from .aflw2000 import AFLW2000Reader
from .annotations import IBUG68_FLIP, lm5_from_lm68, mirror_lm68, yaw_bin
from .base import FaceDatasetReader, resize_sample
from .celeba import CelebAReader
from .errors import DataError, MissingFileError
from .frgc import FRGCReader
from .image_folder import ImageFolderReader
from .imageio import load_image
from .micc import MICCFlorenceReader
from .now import NoWReader
from .pixelface import PixelFaceReader
from .registry import READERS, available_readers, get_reader, register_reader
from .w300lp import W300LPReader

__all__ = [
    "AFLW2000Reader", "CelebAReader", "DataError", "FRGCReader", "FaceDatasetReader", "IBUG68_FLIP",
    "ImageFolderReader", "MICCFlorenceReader", "MissingFileError", "NoWReader", "PixelFaceReader", "READERS",
    "W300LPReader", "available_readers", "get_reader", "lm5_from_lm68", "load_image",
    "mirror_lm68", "register_reader", "resize_sample", "yaw_bin",
]
