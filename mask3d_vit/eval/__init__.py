"""Metrics, each reducible across processes: ``segmentation`` (confusion matrix: mIoU, mean class accuracy, pixel
accuracy, per-class IoU), ``depth`` (AbsRel, RMSE, log10, delta1/2/3, raw and median-scaled) and ``detection``
(COCO box and mask AP); ``baselines`` (image-blind floors: constant and per-position predictors) and ``probe``
(closed-form frozen-feature probes reported beside those floors)."""
