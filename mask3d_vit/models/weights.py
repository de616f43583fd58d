"""Encoder weights in and out: start from ImageNet MAE / timm / Mask3D weights, export the RGB backbone for timm.

Loading (:func:`load_encoder_weights`) accepts, and tells apart by their keys:

- an official MAE pre-training checkpoint (``mae_pretrain_vit_*.pth``: ``{"model": {...}}`` with the encoder keys
  of a timm ViT plus ``decoder_*`` and ``mask_token``, which are dropped);
- a timm ViT state dict (``.pth``/``.bin``/``.safetensors``; ``head.*`` and an unused ``fc_norm.*`` are dropped);
- a backbone written by :func:`export_encoder` (timm keys in ``.safetensors``, or an export folder);
- a mask3d-vit training checkpoint (``{"model": state_dict, "config": ...}``, encoder under ``<prefix>encoder.``).

Position embeddings are resampled to the encoder's grid (keeping the class token) with timm's
``resample_abs_pos_embed``. Torch files load with ``weights_only=True``: a file that needs arbitrary unpickling is
refused rather than executed.

Export (:func:`export_encoder`) writes the colour encoder alone, with timm key names. As a folder in the Hugging
Face hub layout (``config.json`` + ``model.safetensors``; CLI ``mask3d-vit export RUN --out FOLDER/``) it loads
with no other argument, offline, and can be pushed to the hub as it is::

    model = timm.create_model("local-dir:FOLDER", pretrained=True)   # at the training size; img_size=... resamples

As one file (``--out FILE.safetensors``), timm needs the architecture and the training size::

    model = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0, dynamic_img_size=True,
                              img_size=(240, 320),                    # any size: pos embeds are resampled
                              pretrained_cfg_overlay=dict(file="encoder.safetensors",
                                                          input_size=(3, 128, 160)))  # the exported img_size

``input_size`` must be the ``img_size`` stored in the file's metadata whenever it is not square: timm reads the
source grid of the position embedding from it. Feed the model ``mask3d_vit.models.vit.normalize_rgb`` inputs
(ImageNet mean/std on ``[0, 1]`` colour).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from ..checkpoint import load_latest, safe_torch_load
from ..io import atomic_write, write_json
from .vit import TIMM_NAMES, build_encoder

__all__ = ["EXPORT_FORMAT", "LoadReport", "load_encoder_weights", "read_weights", "run_encoder", "export_encoder",
           "hub_config"]

EXPORT_FORMAT = "mask3d-vit-encoder/1"
# File names of the Hugging Face hub layout (timm's ``hf-hub:`` and ``local-dir:`` loaders look for these).
HUB_WEIGHTS, HUB_CONFIG = "model.safetensors", "config.json"
_ANCHOR = "patch_embed.proj.weight"
# Keys of a full ViT / MAE model that an encoder without a classifier never uses.
_DROPPED_PREFIXES = ("head.", "head_dist.", "pre_logits.", "decoder_", "mask_token")


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did.

    Attributes:
        source: the file (or ``"<dict>"``) the weights came from.
        layout: ``"mae"``, ``"timm"``, ``"mask3d-export"``, ``"mask3d-checkpoint"``, or ``"nested"`` (a state
            dict holding the encoder under a prefix, without a mask3d-vit config).
        prefix: the key prefix the encoder was found under (``""`` for timm / MAE layouts).
        loaded: number of encoder tensors loaded.
        missing: encoder keys the source did not provide (they keep their current values).
        unexpected: source keys under the prefix that the encoder does not have.
        dropped: source keys skipped on purpose: outside the prefix (decoder, depth branch, heads of a mask3d-vit
            model), classifier head, MAE decoder, mask token, unused fc_norm.
        pos_embed_resampled: ``(old_grid, new_grid)`` when the position embedding was resampled.
    """
    source: str
    layout: str
    prefix: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    pos_embed_resampled: tuple[tuple[int, int], tuple[int, int]] | None = None

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} encoder tensors from {self.source} ({self.layout} layout"
                 + (f", prefix {self.prefix!r})" if self.prefix else ")")]
        if self.pos_embed_resampled:
            old, new = self.pos_embed_resampled
            parts.append(f"pos_embed resampled {old[0]}x{old[1]} -> {new[0]}x{new[1]}")
        parts.append(f"skipped {len(self.dropped)} non-encoder tensors")
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected: {', '.join(self.unexpected)}")
        return "; ".join(parts)


def read_weights(path: str | Path) -> tuple[dict, dict]:
    """Read a weights file safely onto the CPU.

    Args:
        path: ``.safetensors``, or a torch file (``.pth``, ``.pt``, ``.bin``) holding tensors and plain data only.

    Returns:
        ``(content, metadata)``: the file's dict (a state dict or a checkpoint dict) and the safetensors metadata
        (empty for torch files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
            return safetensors.torch.load_file(str(path), device="cpu"), metadata
        except safetensors.SafetensorError as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    content = safe_torch_load(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a state dict or a checkpoint dict, got {type(content).__name__}")
    return content, {}


def _unwrap(content: dict) -> dict:
    """Checkpoint dict -> its state dict (MAE and ours use ``"model"``, timm's train script ``"state_dict"``)."""
    for key in ("model", "state_dict"):
        if isinstance(content.get(key), dict):
            return content[key]
    return content


def _model_config(content: dict) -> dict:
    """The ``model`` section of the run config a mask3d-vit checkpoint stores (empty for other files)."""
    config = content.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, dict) else {}


def _find_prefix(state: dict, in_chans: int, where: str) -> str:
    """The key prefix under which ``state`` holds a ViT encoder with ``in_chans`` input channels."""
    prefixes = [k[:-len(_ANCHOR)] for k, v in state.items()
                if k.endswith(_ANCHOR) and torch.is_tensor(v) and v.ndim == 4 and v.shape[1] == in_chans]
    if not prefixes:
        raise ValueError(f"{where} holds no ViT encoder weights: expected keys like {_ANCHOR} (or "
                         f"<prefix>encoder.{_ANCHOR}) with {in_chans} input channels; found keys such as "
                         f"{', '.join(list(state)[:5]) or 'none'}")
    if "" in prefixes:
        return ""
    encoders = [p for p in prefixes if p.endswith("encoder.")]
    if len(encoders) == 1:
        return encoders[0]
    if len(prefixes) == 1:
        return prefixes[0]
    raise ValueError(f"{where} holds several ViT encoders (prefixes {', '.join(prefixes)}); extract the one you "
                     f"want into its own state dict")


def _grid_of(img_size, patch_size: int) -> tuple[int, int] | None:
    if img_size is None:
        return None
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    return int(h) // patch_size, int(w) // patch_size


def _source_grid(num_tokens: int, img_size, patch_size: int, target: tuple[int, int], where: str
                 ) -> tuple[int, int]:
    """Patch grid of a stored position embedding with ``num_tokens`` patch positions.

    The recorded image size decides; without one, a token count equal to the ``target`` grid's is taken as that
    grid (what a plain ``load_state_dict`` would do), and otherwise the grid must be square.
    """
    for grid in (_grid_of(img_size, patch_size), target):
        if grid is not None and grid[0] * grid[1] == num_tokens:
            return grid
    side = math.isqrt(num_tokens)
    if side * side == num_tokens:
        return side, side
    raise ValueError(f"{where}: its pos_embed has {num_tokens} patch positions, which is not a square grid, and the "
                     f"source image size is unknown; pass source_img_size=(H, W) of the image size it was trained at")


def load_encoder_weights(encoder: VisionTransformer, source: str | Path | dict, *, strict: bool = True,
                         source_img_size: tuple[int, int] | None = None) -> LoadReport:
    """Load ViT encoder weights from an MAE, timm, exported or mask3d-vit checkpoint (see the module docstring).

    Args:
        encoder: a timm ``VisionTransformer`` (e.g. from :func:`mask3d_vit.models.vit.build_encoder`).
        source: a weights file, an export folder (its ``model.safetensors``), a mask3d-vit run directory (its
            newest loadable checkpoint), or an already loaded state dict / checkpoint dict.
        strict: raise when an encoder key is missing from the source or the source has encoder-level keys the
            encoder lacks. With ``strict=False`` such keys are only reported, and missing ones keep their values.
        source_img_size: ``(H, W)`` the source was trained at, needed only for a non-square position grid in a
            file that does not record it (our exports and checkpoints record it).

    Returns:
        a :class:`LoadReport`; ``str(report)`` is a one-line summary for logs.
    """
    if isinstance(source, dict):
        where, content, metadata = "<dict>", source, {}
    elif Path(source).is_dir() and (Path(source) / HUB_WEIGHTS).is_file():  # an export folder
        where = str(Path(source) / HUB_WEIGHTS)
        content, metadata = read_weights(where)
    elif Path(source).is_dir():
        path, content = load_latest(source)
        where, metadata = str(path), {}
    else:
        where = str(source)
        content, metadata = read_weights(source)
    state = _unwrap(content)
    patch_size = encoder.patch_embed.patch_size[0]
    prefix = _find_prefix(state, encoder.patch_embed.proj.in_channels, where)
    if metadata.get("format") == EXPORT_FORMAT:
        layout = "mask3d-export"
        source_img_size = source_img_size or json.loads(metadata["img_size"])
    elif prefix:
        layout = "mask3d-checkpoint" if _model_config(content) else "nested"
        source_img_size = source_img_size or _model_config(content).get("img_size")
    else:
        layout = "mae" if any(k.startswith("decoder_") or k == "mask_token" for k in state) else "timm"

    own = encoder.state_dict()
    dropped = []
    unexpected = []
    selected = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None  # None: decoder, depth branch, heads of ours
        if name in own:
            selected[name] = value
        elif name is None or name.startswith(_DROPPED_PREFIXES) or name.startswith("fc_norm."):
            dropped.append(key)
        else:
            unexpected.append(key)

    resampled = None
    src_w = selected[_ANCHOR]
    own_w = own[_ANCHOR]
    if src_w.shape[-2:] != own_w.shape[-2:]:
        raise ValueError(f"{where}: patch size mismatch: the source has {src_w.shape[-2]}x{src_w.shape[-1]} patches, "
                         f"the encoder {own_w.shape[-2]}x{own_w.shape[-1]}; build an encoder with the source's patch "
                         f"size")
    if src_w.shape[0] != own_w.shape[0]:
        raise ValueError(f"{where}: the source ViT is {src_w.shape[0]} wide but the encoder is {own_w.shape[0]} wide; "
                         f"build the encoder of the source's size (e.g. vit_base_patch16 for a ViT-B checkpoint)")
    if "pos_embed" in selected:
        pos = selected["pos_embed"]
        new = tuple(encoder.patch_embed.grid_size)
        old = _source_grid(pos.shape[1] - encoder.num_prefix_tokens, source_img_size, patch_size, new, where)
        if old != new:
            selected["pos_embed"] = resample_abs_pos_embed(pos, new_size=new, old_size=old,
                                                           num_prefix_tokens=encoder.num_prefix_tokens)
            resampled = (old, new)
    mismatched = [f"{k}: source {tuple(v.shape)} vs encoder {tuple(own[k].shape)}"
                  for k, v in selected.items() if tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        raise ValueError(f"{where}: tensors whose shapes do not fit the encoder: {'; '.join(mismatched)}")

    missing = sorted(set(own) - set(selected))
    # Our dense and detection backbones prune the encoder's final norm (their features come from inner blocks), so a
    # fine-tuning run has none: the encoder keeps its own (the identity at initialisation).
    required = [k for k in missing if not (layout == "mask3d-checkpoint" and k.startswith("norm."))]
    if strict and (required or unexpected):
        raise ValueError(f"{where}: does not match the encoder; missing: {', '.join(missing) or 'none'}; "
                         f"unexpected: {', '.join(unexpected) or 'none'}. Pass strict=False to load what matches")
    encoder.load_state_dict(selected, strict=False)
    return LoadReport(source=where, layout=layout, prefix=prefix, loaded=len(selected), missing=missing,
                      unexpected=unexpected, dropped=dropped, pos_embed_resampled=resampled)


def run_encoder(source: str | Path) -> tuple[VisionTransformer, dict]:
    """The colour encoder of a run of ours, pre-training or fine-tuning (seg, depth, det), with its weights.

    Args:
        source: a run directory (its newest loadable checkpoint is used) or a checkpoint file.

    Returns:
        ``(encoder, info)``: a timm ``VisionTransformer`` built at the run's ``model.encoder`` / ``model.img_size``
        and ``info`` with ``path`` (the checkpoint), ``encoder``, ``img_size`` (H, W), ``step`` and ``report``
        (the :class:`LoadReport`; a fine-tuning run's backbone has no final norm, which stays the identity).
    """
    path, ckpt = load_latest(source)
    model_cfg = _model_config(ckpt)
    if "encoder" not in model_cfg or "img_size" not in model_cfg:
        raise ValueError(f"{path}: its config has no model.encoder / model.img_size; expected a checkpoint of a "
                         f"mask3d-vit pre-training or fine-tuning run")
    name, img_size = model_cfg["encoder"], tuple(int(s) for s in model_cfg["img_size"])
    encoder = build_encoder(name, img_size=img_size)
    report = load_encoder_weights(encoder, ckpt)
    report.source = str(path)
    return encoder, {"path": path, "encoder": name, "img_size": img_size, "step": ckpt.get("step", ""),
                     "report": report}


def export_encoder(source: str | Path, out: str | Path) -> Path:
    """Write the colour encoder of a run (pre-training or fine-tuning) as a timm-compatible backbone.

    Args:
        source: a run directory (its newest loadable checkpoint is used) or a checkpoint file.
        out: a ``.safetensors`` file, or a folder (any name without a suffix) that receives ``model.safetensors``
            and ``config.json`` in the Hugging Face hub layout, which ``timm.create_model("local-dir:FOLDER",
            pretrained=True)`` loads (timm >= 1.0.16). Files are written atomically.

    Returns:
        the ``.safetensors`` file written. Its metadata records ``format``, ``encoder`` (our name), ``timm_model``
        (the timm architecture, empty for sizes timm lacks), ``img_size`` (JSON ``[H, W]``), ``source`` and
        ``step``.
    """
    out = Path(out)
    if out.suffix not in (".safetensors", ""):
        raise ValueError(f"--out {out}: the exported backbone is written as .safetensors (name it e.g. "
                         f"{out.with_suffix('.safetensors').name}) or as a folder for timm (e.g. {out.stem}/)")
    encoder, info = run_encoder(source)
    metadata = {
        "format": EXPORT_FORMAT,
        "encoder": info["encoder"],
        "timm_model": TIMM_NAMES.get(info["encoder"], ""),
        "img_size": json.dumps(list(info["img_size"])),
        "source": str(info["path"]),
        "step": str(info["step"]),
    }
    weights = out if out.suffix else out / HUB_WEIGHTS
    tensors = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    with atomic_write(weights) as f:
        f.write(safetensors.torch.save(tensors, metadata=metadata))
    if not out.suffix:
        write_json(out / HUB_CONFIG, hub_config(encoder, info["img_size"], metadata))
    return weights


def hub_config(encoder: VisionTransformer, img_size: tuple[int, int], metadata: dict) -> dict:
    """The ``config.json`` of an export folder: what timm's ``local-dir:`` / ``hf-hub:`` loaders read.

    ``model_args`` rebuild our encoder exactly (width, depth, heads, the training grid, no classifier,
    ``dynamic_img_size``) on top of a registered timm architecture, so sizes without a timm name load too.
    ``pretrained_cfg`` gives timm's data pipeline the training input size and ImageNet normalisation.

    Args:
        encoder: the exported encoder.
        img_size: ``(H, W)`` it was trained at.
        metadata: the safetensors metadata of the export (kept under ``mask3d_vit``).
    """
    block = encoder.blocks[0]
    model_args = {
        "img_size": list(img_size),
        "patch_size": encoder.patch_embed.patch_size[0],
        "embed_dim": encoder.embed_dim,
        "depth": len(encoder.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / encoder.embed_dim,
        "num_classes": 0,
        "global_pool": encoder.global_pool,
        "class_token": encoder.cls_token is not None,
        "dynamic_img_size": True,
    }
    return {
        # Any registered ViT of the patch size works as the base: model_args set every dimension.
        "architecture": metadata["timm_model"] or f"vit_tiny_patch{model_args['patch_size']}_224",
        "num_classes": 0,
        "num_features": encoder.num_features,
        "global_pool": encoder.global_pool,
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": [3, *img_size],
            "fixed_input_size": False,
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "crop_mode": "center",
            "mean": list(IMAGENET_DEFAULT_MEAN),
            "std": list(IMAGENET_DEFAULT_STD),
            "num_classes": 0,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
        "mask3d_vit": {k: json.loads(v) if k == "img_size" else v for k, v in metadata.items()},
    }


def _run_export(args: argparse.Namespace) -> None:
    out = export_encoder(args.source, args.out)
    with safetensors.safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    h, w = json.loads(meta["img_size"])
    folder = out.parent if out.name == HUB_WEIGHTS and (out.parent / HUB_CONFIG).is_file() else None
    written = f"{folder}/ ({HUB_WEIGHTS} + {HUB_CONFIG})" if folder else str(out)
    print(f"wrote {written}: {meta['encoder']} encoder trained at {h}x{w} from {meta['source']}")
    if folder:
        print(f"load it with timm.create_model('local-dir:{folder}', pretrained=True) and ImageNet-normalised inputs")
    elif meta["timm_model"]:
        print(f"load it with timm.create_model({meta['timm_model']!r}, pretrained=True, num_classes=0, "
              f"dynamic_img_size=True, pretrained_cfg_overlay=dict(file={str(out)!r}, input_size=(3, {h}, {w}))) "
              f"and ImageNet-normalised inputs")
