"""Readers of the RGB-D dataset formats, one module each; all return sample dicts (:mod:`mask3d_vit.data.sample`).

=============  ======================================================  ==================
module         reads                                                   labels
=============  ======================================================  ==================
nyuv2          ``nyu_depth_v2_labeled.mat`` (HDF5) or its PNG export   nyu40 / nyu13
scannet        ``.sens`` streams, exported scene folders, frames_25k   scannet20
sunrgbd        original frame folders (bit-rotated depth), flat dirs   sun37
cityscapes     leftImg8bit + disparity + camera (+ gtFine)             cityscapes19
pairs          any colour + depth folders with a known depth scale     none
=============  ======================================================  ==================

The library's own frames-folder layout is read by :class:`mask3d_vit.data.frames.FramesDataset`. Each module
declares its format once (``DATASET_FORMAT``, a :class:`mask3d_vit.data.registry.DatasetFormat`: options, class
set, splits, how to recognise its files). Tasks do not use the readers directly:
:func:`mask3d_vit.data.build.build_dataset` opens them from a ``SourceConfig``.
"""

