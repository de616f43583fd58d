"""Figures a person looks at, one module per kind: ``panels`` (coloured depth, class overlays, legends, colour
bars: the pieces every figure shares), ``reconstruction`` (pre-training), ``dense`` (segmentation and depth),
``detection`` (instances) and ``curves`` (losses). A task names its figures in its registry entry
(:mod:`mask3d_vit.tasks.registry`)."""
from .curves import loss_curve
from .panels import attach_panel, colorbar_panel, colorize_depth, depth_range, legend_panel, overlay_labels
from .reconstruction import build_reconstruction_figure, patch_mask_to_pixels, reconstruction_figure

__all__ = ["attach_panel", "build_reconstruction_figure", "colorbar_panel", "colorize_depth", "depth_range",
           "legend_panel", "loss_curve", "overlay_labels", "patch_mask_to_pixels", "reconstruction_figure"]
