"""A run directory written before config schema versions still resumes, exports and loads with its own settings."""
import safetensors
import torch
import yaml

from mask3d_vit.checkpoint import list_checkpoints, load_latest
from mask3d_vit.cli import main
from mask3d_vit.config import VERSION_KEY
from mask3d_vit.tasks.pretrain import load_pretrain_model

ARGS = ["data.sources=[{format: synthrooms, num_frames: 8, seed: 0}]", "data.size=[32,48]",
        "model.encoder=vit_micro_patch16", "model.decoder_dim=32", "model.depth_dim=32", "model.decoder_depth=1",
        "model.depth_blocks=1", "train.batch_size=4", "train.precision=fp32", "train.device=cpu", "val_batches=0"]
# Keys the model section gained after the first runs; a run from then has none of them and no schema_version.
ADDED_SINCE = ("fusion", "mask_scheme", "depth_prior")


def as_unversioned(config: dict) -> dict:
    old = {k: v for k, v in config.items() if k != VERSION_KEY}
    old["model"] = {k: v for k, v in old["model"].items() if k not in ADDED_SINCE}
    return old


def make_old_run(run):
    """A pre-training run trained with the decoder of its time (concat fusion), its config.yaml and checkpoints
    rewritten as the package wrote them before schema versions and the keys added since."""
    assert main(["pretrain", "--out", str(run), "train.epochs=1", "model.fusion=concat", *ARGS]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(as_unversioned(saved), sort_keys=False))
    for path in list_checkpoints(run):
        state = torch.load(path, weights_only=True)
        state["config"] = as_unversioned(state["config"])
        torch.save(state, path)


def test_an_unversioned_run_resumes_and_exports_with_the_settings_it_was_trained_with(tmp_path):
    run = tmp_path / "old"
    make_old_run(run)
    before, _ = load_latest(run)
    model, cfg, _ = load_pretrain_model(run)
    assert cfg.model.fusion == "concat" and cfg.model.img_size == (32, 48)

    assert main(["export", str(run), "--out", str(tmp_path / "enc.safetensors")]) == 0
    with safetensors.safe_open(str(tmp_path / "enc.safetensors"), framework="pt") as f:
        exported = {k: f.get_tensor(k) for k in f.keys()}
    assert torch.equal(exported["pos_embed"], model.encoder.pos_embed.detach())

    assert main(["pretrain", "--out", str(run), "--resume", "auto", "train.epochs=2", *ARGS]) == 0
    after, state = load_latest(run)
    assert after != before and state["step"] == 2 * int(load_latest(before)[1]["step"])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for config in (saved, state["config"]):  # migrated once, then written with its version
        assert config[VERSION_KEY] >= 1
        assert (config["model"]["fusion"], config["model"]["mask_scheme"], config["model"]["depth_prior"]) == (
            "concat", "independent", "none")
