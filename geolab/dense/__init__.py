"""Transfer to a dense task: semantic segmentation of geoworld masks, each pre-training initialising the encoder.

Ayush et al. 2021, Sec. 5.2.

The paper transfers its fMoW pre-trainings to two dense tasks: object detection on xView
(RetinaNet, AP50) and building segmentation on SpaceNet (PSANet, mIoU); their numbers are in
:data:`geolab.paper.PAPER_TRANSFER`. Neither data set is available offline, so the course's dense task is
geoworld's: next to each image, geoworld writes a PNG mask of class ids (0 background,
1 building, 2 water, 3 road) whose path is in the manifest column ``mask_path``. geoworld is a
simulation; numbers measured here show the trend of the comparison, not the paper's values.

The pieces:

* :class:`SegmentationDataset` (:mod:`geolab.dense.data`) -- (normalised image, mask) pairs of
  one split; training flips the image and its mask together.
* :class:`SegmentationModel` (:mod:`geolab.dense.model`) -- the ResNet backbone's stages as
  encoder plus a light decoder (FPN-lite by default, or the classic FCN head); ``freeze_backbone``
  gives the dense analogue of a linear probe.
* :func:`confusion_matrix`, :func:`scores_from_confusion`, :func:`segmentation_scores` --
  per-class IoU, mIoU and pixel accuracy over a whole split (:mod:`geolab.dense.metrics`).
* :func:`fit_dense`, :func:`evaluate_dense` -- the plain training loop and the evaluation.
* :func:`train_dense` -- all of it for one initialisation (what notebook 07 calls); these three
  and :func:`predict_masks` are in :mod:`geolab.dense.train`.
"""

from geolab.dense.data import GEOWORLD_MASK_CLASSES, SegmentationDataset
from geolab.dense.metrics import confusion_matrix, scores_from_confusion, segmentation_scores
from geolab.dense.model import FCNDecoder, FPNLiteDecoder, ResNetEncoder, SegmentationModel
from geolab.dense.train import evaluate_dense, fit_dense, predict_masks, train_dense

__all__ = [
    "GEOWORLD_MASK_CLASSES",
    "FCNDecoder",
    "FPNLiteDecoder",
    "ResNetEncoder",
    "SegmentationDataset",
    "SegmentationModel",
    "confusion_matrix",
    "evaluate_dense",
    "fit_dense",
    "predict_masks",
    "scores_from_confusion",
    "segmentation_scores",
    "train_dense",
]
