"""Loading and validation of the raw iWildCam 2020 formats: the only place that reads them."""
from data.coco import load_metadata
from data.images import ImageError, image_path, read_image, reduction_for
from data.landsat import BANDS, index_landsat, read_patch
from data.megadetector import load_detections
from data.quality import DataError, QualityReport

__all__ = ["BANDS", "DataError", "ImageError", "QualityReport", "image_path", "index_landsat",
           "load_detections", "load_metadata", "read_image", "read_patch", "reduction_for"]
