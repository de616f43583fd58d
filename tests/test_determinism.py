"""Training at the default recipe's size (pretrain_synth_tiny: ViT-Tiny, 96x128, every colour patch visible) is bitwise reproducible on CPU:
two identical runs end with identical weights and optimizer state, which is what makes an interrupted and resumed
run equal to an uninterrupted one."""
import pytest
import torch

from mask3d_vit.config import load_config
from mask3d_vit.checkpoint import load_latest
from mask3d_vit.tasks.pretrain import PretrainConfig, run_pretrain

# The recipe's model and image size; fewer frames and a smaller batch keep it short (4 optimizer steps). Not
# smaller: below 32768 elements torch accumulates an indexing backward serially, which hid the race at toy sizes.
SHORT = ["data.sources=[{format: synthrooms, num_frames: 32, seed: 0}]", "train.batch_size=16", "train.epochs=2",
         "train.precision=fp32", "train.figure_every=0", "val_batches=0"]


@pytest.fixture
def threads():
    # The order-dependent kernels this guards against only differ when several threads share the work.
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)


def test_two_identical_runs_at_the_recipe_size_are_bitwise_equal(tmp_path, threads):
    states = []
    for name in ("a", "b"):
        cfg = load_config(PretrainConfig, "pretrain_synth_tiny", SHORT)
        assert tuple(cfg.model.img_size) == tuple(cfg.data.size) and cfg.model.encoder == "vit_tiny_patch16"
        run_pretrain(cfg, tmp_path / name)
        states.append(load_latest(tmp_path / name)[1])
    a, b = states
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i, (sa, sb) in enumerate(zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())):
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k], sb[k]), (i, k)


def test_colour_jitter_on_the_device_trains_the_same_weights(tmp_path):
    """The trainer applies the jitter the loader deferred (data.augment_on_device) before the model sees the batch."""
    micro = ["data.sources=[{format: synthrooms, num_frames: 8, seed: 0}]", "data.size=[32,48]", "data.jitter=0.4",
             "model.img_size=[32,48]", "model.encoder=vit_micro_patch16", "model.decoder_dim=32", "model.depth_dim=32",
             "model.decoder_depth=1", "model.depth_blocks=1", "train.batch_size=4", "train.max_steps=2",
             "train.device=cpu", "train.precision=fp32", "train.figure_every=0", "val_batches=0"]
    weights = []
    for on_device in ("false", "true"):
        cfg = load_config(PretrainConfig, "pretrain_synth_tiny", micro + [f"data.augment_on_device={on_device}"])
        run_pretrain(cfg, tmp_path / on_device)
        weights.append(load_latest(tmp_path / on_device)[1]["model"])
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
