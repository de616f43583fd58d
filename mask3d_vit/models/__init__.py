"""Models: the timm ViT colour encoder, the Mask3D pre-training model, and encoder weight import/export."""
from .mask3d import Mask3D, Mask3DConfig, random_masking
from .vit import ENCODER_NAMES, TIMM_NAMES, build_encoder, check_image, normalize_rgb, set_attention_backend
from .weights import LoadReport, export_encoder, load_encoder_weights

__all__ = ["Mask3D", "Mask3DConfig", "random_masking", "ENCODER_NAMES", "TIMM_NAMES", "build_encoder",
           "check_image", "normalize_rgb", "set_attention_backend", "LoadReport", "export_encoder",
           "load_encoder_weights"]
