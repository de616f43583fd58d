"""Encoder init-from (MAE, timm, exported, mask3d-vit checkpoint layouts) and timm-compatible export."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import timm
import torch
from timm.layers import resample_abs_pos_embed

from mask3d_vit.cli import build_parser
from mask3d_vit.config import to_dict
from mask3d_vit.checkpoint import save_checkpoint
from mask3d_vit.models.backbone import build_backbone
from mask3d_vit.models.dense import DenseModel, DenseModelConfig
from mask3d_vit.models.mask3d import Mask3D, Mask3DConfig
from mask3d_vit.models.vit import TIMM_NAMES, build_encoder, normalize_rgb
from mask3d_vit.models.weights import EXPORT_FORMAT, export_encoder, load_encoder_weights

MICRO = dict(encoder="vit_micro_patch16", img_size=(32, 48), depth_dim=32, depth_heads=2, decoder_dim=32,
             decoder_depth=1, decoder_heads=2)


@dataclass
class Opaque:
    """Any class outside torch's safe-unpickling allowlist."""
    value: int = 1


def assert_same_except(encoder, reference: dict, skip=("pos_embed",)) -> None:
    for key, value in encoder.state_dict().items():
        if key not in skip:
            torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def tiny_state() -> dict:
    """A timm ViT-Ti/16 state dict, classifier head included (tests copy before changing it)."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", num_classes=1000).state_dict()


def write_run(run_dir: Path, **model_kwargs) -> Mask3D:
    """A pre-training run folder with one checkpoint, as the engine writes it."""
    cfg = Mask3DConfig(**model_kwargs)
    torch.manual_seed(1)
    model = Mask3D.from_config(cfg)
    save_checkpoint({"model": model.state_dict(), "config": {"model": to_dict(cfg)}, "step": 7}, run_dir, 7)
    return model


def test_mae_layout_with_pos_embed_resampling(tmp_path, tiny_state):
    state = dict(tiny_state)
    del state["head.weight"], state["head.bias"]  # MAE pre-training checkpoints have no classifier
    decoder = {"mask_token": torch.zeros(1, 1, 512), "decoder_pos_embed": torch.zeros(1, 197, 512),
               "decoder_embed.weight": torch.zeros(512, 192), "decoder_blocks.0.norm1.weight": torch.ones(512),
               "decoder_norm.weight": torch.ones(512), "decoder_pred.weight": torch.zeros(768, 512)}
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": {**state, **decoder}, "args": {"mask_ratio": 0.75}}, path)

    encoder = build_encoder("vit_tiny_patch16", img_size=(128, 160))
    report = load_encoder_weights(encoder, path)
    assert report.layout == "mae" and report.prefix == "" and not report.missing and not report.unexpected
    assert sorted(report.dropped) == sorted(decoder)
    assert report.pos_embed_resampled == ((14, 14), (8, 10))
    expected = resample_abs_pos_embed(state["pos_embed"], new_size=(8, 10), old_size=(14, 14), num_prefix_tokens=1)
    torch.testing.assert_close(encoder.pos_embed.detach(), expected)
    torch.testing.assert_close(encoder.pos_embed[:, 0], state["pos_embed"][:, 0])  # class position kept as is
    assert_same_except(encoder, state)
    assert "pos_embed resampled 14x14 -> 8x10" in str(report)


def test_timm_layout_safetensors_drops_head(tmp_path, tiny_state):
    state = tiny_state
    path = tmp_path / "vit_tiny.safetensors"
    safetensors.torch.save_file(state, str(path))
    encoder = build_encoder("vit_tiny_patch16", img_size=(224, 224))
    report = load_encoder_weights(encoder, path)
    assert report.layout == "timm" and sorted(report.dropped) == ["head.bias", "head.weight"]
    assert report.pos_embed_resampled is None
    assert_same_except(encoder, state, skip=())


def test_mask3d_checkpoint_layout_and_ddp_prefix(tmp_path):
    torch.manual_seed(0)
    model = Mask3D(**MICRO)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # as saved from a DDP-wrapped model
    path = tmp_path / "step_00000010.pt"
    torch.save({"model": state, "config": {"model": to_dict(Mask3DConfig(**MICRO))}, "step": 10}, path)

    same = build_encoder("vit_micro_patch16", img_size=(32, 48))
    report = load_encoder_weights(same, path)
    assert report.layout == "mask3d-checkpoint" and report.prefix == "module.encoder."
    assert report.pos_embed_resampled is None and report.loaded == len(same.state_dict())
    assert_same_except(same, model.encoder.state_dict(), skip=())
    assert load_encoder_weights(same, {"model": state}).layout == "nested"  # no mask3d-vit config alongside

    bigger = build_encoder("vit_micro_patch16", img_size=(64, 64))
    report = load_encoder_weights(bigger, path)
    assert report.pos_embed_resampled == ((2, 3), (4, 4))  # the non-square source grid comes from the config
    assert_same_except(bigger, model.encoder.state_dict())


def test_pickle_needing_file_is_refused(tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"model": build_encoder("vit_micro_patch16").state_dict(), "extra": Opaque()}, path)
    with pytest.raises(ValueError, match="unsafe.pth: refused: the file needs arbitrary unpickling"):
        load_encoder_weights(build_encoder("vit_micro_patch16"), path)


def test_errors_name_the_problem(tmp_path, tiny_state):
    micro = build_encoder("vit_micro_patch16")
    state = micro.state_dict()
    with pytest.raises(ValueError, match="<dict> holds no ViT encoder weights: expected keys like "
                                         "patch_embed.proj.weight"):
        load_encoder_weights(micro, {"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(ValueError, match="patch size mismatch: the source has 8x8 patches"):
        load_encoder_weights(micro, {**state, "patch_embed.proj.weight": torch.zeros(64, 3, 8, 8)})
    with pytest.raises(ValueError, match="192 wide but the encoder is 64 wide"):
        load_encoder_weights(micro, tiny_state)
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_encoder_weights(micro, tmp_path / "missing.pth")
    odd = {**state, "pos_embed": torch.zeros(1, 1 + 6, 64)}
    with pytest.raises(ValueError, match="6 patch positions, which is not a square grid.*source_img_size"):
        load_encoder_weights(micro, odd)
    report = load_encoder_weights(micro, odd, source_img_size=(32, 48))
    assert report.pos_embed_resampled == ((2, 3), (14, 14))


def test_strict_reports_missing_and_unexpected_keys():
    encoder = build_encoder("vit_micro_patch16")
    state = build_encoder("vit_micro_patch16").state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("norm.")}
    partial["blocks.9.attn.qkv.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="missing: norm.bias, norm.weight; unexpected: blocks.9.attn.qkv.weight"):
        load_encoder_weights(encoder, partial)
    before = encoder.norm.weight.detach().clone()
    report = load_encoder_weights(encoder, partial, strict=False)
    assert report.missing == ["norm.bias", "norm.weight"] and report.unexpected == ["blocks.9.attn.qkv.weight"]
    torch.testing.assert_close(encoder.norm.weight.detach(), before)
    torch.testing.assert_close(encoder.blocks[0].attn.qkv.weight.detach(), state["blocks.0.attn.qkv.weight"])


def test_export_loads_in_timm_with_identical_features(tmp_path):
    model = write_run(tmp_path / "run", encoder="vit_tiny_patch16", img_size=(64, 96), depth_blocks=0)
    out = export_encoder(tmp_path / "run", tmp_path / "encoder.safetensors")
    with safetensors.safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == EXPORT_FORMAT and meta["timm_model"] == TIMM_NAMES["vit_tiny_patch16"]
    assert json.loads(meta["img_size"]) == [64, 96] and meta["step"] == "7"
    assert keys == set(model.encoder.state_dict())
    assert not list(tmp_path.glob(".encoder.safetensors.*"))  # no temporary file left behind

    ours = model.encoder.eval()
    x = normalize_rgb(torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8))
    overlay = dict(file=str(out), input_size=(3, 64, 96))
    same_size = timm.create_model(meta["timm_model"], pretrained=True, pretrained_cfg_overlay=overlay,
                                  num_classes=0, img_size=(64, 96), dynamic_img_size=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(same_size.forward_features(x), ours.forward_features(x))
        torch.testing.assert_close(same_size(x), ours(x))

    # At 224 the stored 4x6 grid is resampled by timm's loader exactly as our encoder does it on the fly.
    default_size = timm.create_model(meta["timm_model"], pretrained=True, pretrained_cfg_overlay=overlay,
                                     num_classes=0, img_size=224).eval()
    assert default_size.pos_embed.shape == (1, 1 + 14 * 14, 192)
    x224 = normalize_rgb(torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8))
    with torch.no_grad():
        torch.testing.assert_close(default_size.forward_features(x224), ours.forward_features(x224))

    again = build_encoder("vit_tiny_patch16", img_size=(96, 96))
    report = load_encoder_weights(again, out)
    assert report.layout == "mask3d-export" and report.pos_embed_resampled == ((4, 6), (6, 6))
    from_run = build_encoder("vit_tiny_patch16", img_size=(64, 96))
    report = load_encoder_weights(from_run, tmp_path / "run")  # a run directory: its newest checkpoint
    assert report.source.endswith("step_00000007.pt") and report.layout == "mask3d-checkpoint"
    assert_same_except(from_run, ours.state_dict(), skip=())


def test_export_cli_and_errors(tmp_path, capsys):
    write_run(tmp_path / "run", **MICRO)
    parser = build_parser()
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000007.pt"
    args = parser.parse_args(["export", str(ckpt), "--out", str(tmp_path / "micro.safetensors")])
    args.func(args)
    assert "vit_micro_patch16 encoder trained at 32x48" in capsys.readouterr().out
    with safetensors.safe_open(str(tmp_path / "micro.safetensors"), framework="pt") as f:
        assert f.metadata()["encoder"] == "vit_micro_patch16" and f.metadata()["timm_model"] == ""

    with pytest.raises(ValueError, match="written as .safetensors"):
        export_encoder(ckpt, tmp_path / "micro.pth")
    torch.save({"model": {}, "config": {"optim": {}}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no model.encoder / model.img_size"):
        export_encoder(tmp_path / "other.pt", tmp_path / "x.safetensors")


def test_export_of_a_fine_tuning_run_writes_its_backbone(tmp_path, capsys):
    cfg = DenseModelConfig(encoder="vit_micro_patch16", img_size=(32, 48), neck_channels=16, head_channels=16)
    torch.manual_seed(2)
    model = DenseModel.from_config(cfg, task="seg", num_classes=5)
    save_checkpoint({"model": model.state_dict(), "config": {"task": "seg", "model": to_dict(cfg)}, "step": 3},
                    tmp_path / "seg", 3)
    out = tmp_path / "seg.safetensors"
    args = build_parser().parse_args(["export", str(tmp_path / "seg"), "--out", str(out)])
    args.func(args)
    assert "vit_micro_patch16 encoder trained at 32x48" in capsys.readouterr().out
    exported = safetensors.torch.load_file(str(out))
    tuned = model.backbone.encoder.state_dict()  # no final norm: the dense backbone prunes it
    assert set(exported) - set(tuned) == {"norm.weight", "norm.bias"}
    for key, value in tuned.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)
    norm_w, norm_b = exported["norm.weight"], exported["norm.bias"]  # the identity the encoder starts with
    assert torch.equal(norm_w, torch.ones_like(norm_w)) and torch.equal(norm_b, torch.zeros_like(norm_b))


def test_init_from_logs_what_it_loaded(tmp_path, caplog):
    write_run(tmp_path / "run", **MICRO)
    with caplog.at_level(logging.INFO, logger="mask3d_vit.models"):
        build_backbone(encoder="vit_micro_patch16", out_indices=(1,), img_size=(64, 64), init_from=tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if r.name == "mask3d_vit.models"]
    assert len(lines) == 1, lines
    micro = build_encoder("vit_micro_patch16", img_size=(32, 48))
    others = len(Mask3D(**MICRO).state_dict()) - len(micro.state_dict())
    assert f"loaded {len(micro.state_dict())} encoder tensors from {tmp_path / 'run'}" in lines[0]
    assert "pos_embed resampled 2x3 -> 4x4" in lines[0] and f"skipped {others} non-encoder tensors" in lines[0]


@pytest.mark.parametrize("kwargs", [dict(encoder="vit_tiny_patch16", img_size=(64, 96), depth_blocks=0), MICRO],
                         ids=["tiny", "micro-no-timm-name"])
def test_export_folder_loads_with_timm_local_dir_offline(tmp_path, kwargs, monkeypatch, capsys):
    model = write_run(tmp_path / "run", **kwargs)
    args = build_parser().parse_args(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m3d") + "/"])
    args.func(args)
    assert sorted(p.name for p in (tmp_path / "m3d").iterdir()) == ["config.json", "model.safetensors"]
    assert f"timm.create_model('local-dir:{tmp_path / 'm3d'}', pretrained=True)" in capsys.readouterr().out
    config = json.loads((tmp_path / "m3d" / "config.json").read_text())
    h, w = kwargs["img_size"]
    assert config["pretrained_cfg"]["input_size"] == [3, h, w] and config["mask3d_vit"]["step"] == "7"

    def no_network(*_):
        raise AssertionError("timm tried to reach the network")
    monkeypatch.setattr("socket.socket.connect", no_network)
    loaded = timm.create_model(f"local-dir:{tmp_path / 'm3d'}", pretrained=True).eval()
    assert tuple(timm.data.resolve_data_config(model=loaded)["input_size"]) == (3, h, w)
    ours = model.encoder.eval()
    x = normalize_rgb(torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8))
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), ours.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded(x), ours(x), rtol=0, atol=0)

    # The folder is also an --init-from source.
    again = build_encoder(kwargs["encoder"], img_size=(h, w))
    report = load_encoder_weights(again, tmp_path / "m3d")
    assert report.layout == "mask3d-export" and report.source.endswith("model.safetensors")
    assert_same_except(again, ours.state_dict(), skip=())
