"""Preprocessing of real photos: detection + 5 points (MTCNN, or BlazeFace + the converted
face-api 68-point network), Deng's 5-point alignment for any face model and crop size,
68 points (the converted face-api network when its weights are cached; FAN from local weights),
skin attention masks.

Heavy dependencies (facenet-pytorch, face-alignment) are imported only when a detector or
landmarker is constructed.
"""

from .align import (AlignedFace, align_face, deng_target_points, deng_target_points_orthographic,
                    fit_scale_translation, project_perspective)
from .detect import (DETECTORS, MTCNN_TO_CONVENTION, BlazeFaceDetector, FaceDetection, MTCNNDetector,
                     make_detector, select_face)
from .landmarks68 import (LANDMARKERS, FaceNetLandmarker, FANLandmarker, MissingWeightsError, find_fan_weights,
                          make_landmarker)
from .pipeline import AlignCrop, box_from_lm5, preprocess_photo
from .skin import (DEFAULT_SKIN_MODEL, SkinColourModel, fit_skin_model, skin_attention, skin_mask,
                   skin_probability)
from .transform import ScaleTranslation, warp_scale_translation

__all__ = [
    "AlignCrop", "AlignedFace", "BlazeFaceDetector", "DEFAULT_SKIN_MODEL", "DETECTORS", "FANLandmarker",
    "FaceDetection", "FaceNetLandmarker", "LANDMARKERS", "make_detector", "make_landmarker",
    "MTCNNDetector", "MTCNN_TO_CONVENTION", "MissingWeightsError", "ScaleTranslation",
    "SkinColourModel", "align_face", "box_from_lm5", "deng_target_points",
    "deng_target_points_orthographic", "find_fan_weights", "fit_scale_translation",
    "fit_skin_model", "preprocess_photo", "project_perspective", "select_face", "skin_attention",
    "skin_mask", "skin_probability", "warp_scale_translation",
]
