"""Figures: one depth scale with a colour bar in metres, legends and colour bars for predictions, TensorBoard images."""
from __future__ import annotations

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig, Trainer
from mask3d_vit.io import write_png
from mask3d_vit.viz import attach_panel, build_reconstruction_figure, colorbar_panel, depth_range, legend_panel

from toy import ToyData, ToyModel


def reconstruction_inputs(pred_value: float):
    """Two 32x48 frames with depth ramps from 1 to 5 m, and a model output predicting ``pred_value`` everywhere."""
    depth = torch.linspace(1, 5, 32 * 48).reshape(1, 1, 32, 48).repeat(2, 1, 1, 1)
    batch = {"rgb": torch.zeros(2, 3, 32, 48, dtype=torch.uint8), "depth": depth, "valid": depth > 0}
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, ::2] = True
    out = {"pred_depth": torch.full_like(depth, pred_value), "rgb_mask": mask, "depth_mask": mask}
    return batch, out


def test_predicted_and_true_depth_share_one_scale_with_a_colour_bar_in_metres():
    batch, out = reconstruction_inputs(3.0)
    fig = build_reconstruction_figure(batch, out)
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["RGB", "masked RGB", "masked depth", "predicted depth", "true depth", "|error|"]
    grid = np.array(fig.axes[:12]).reshape(2, 6)
    lo, hi = depth_range(batch["depth"].numpy(), batch["valid"].numpy())
    for row in grid:
        for ax in row[2:5]:  # masked, predicted and true depth: values in metres on one colour scale
            assert ax.images[0].get_clim() == (lo, hi), ax.get_title()
    # A constant prediction is one flat colour, not its own stretched range.
    assert np.ptp(grid[0, 3].images[0].get_array()) == 0
    labels = [ax.get_xlabel() for ax in fig.axes[12:]]
    assert labels == ["depth (m), shared by these panels", "|error| (m)"]


def test_colour_bar_and_legend_panels_sit_beside_the_untouched_image():
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    bar = colorbar_panel(40, 0.5, 4.5)
    assert bar.shape == (96, 80, 3)  # at least 96 px high to stay readable
    column = bar[16:88, 12].astype(int)
    assert np.abs(np.diff(column, axis=0)).sum(1).max() > 0  # a colour ramp, top to bottom
    legend = legend_panel([("bed", np.array([255, 0, 0])), ("floor", np.array([0, 0, 255]))])
    assert legend.shape[0] == 8 + 2 * 16 and (legend[8:16, 8:12] == [255, 0, 0]).all()
    both = attach_panel(image, legend)
    assert both.shape == (40, 56 + legend.shape[1], 3) and (both[:, :56] == image).all()


class Drawn:
    """A visualizer writing a PNG whose colour encodes the step (as the real figures do, but instantly)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, batch, path):
        self.calls += 1
        write_png(path, np.full((8, 12, 3), 10 * self.calls, np.uint8))


def test_figures_reach_tensorboard_as_images(tmp_path):
    torch.manual_seed(0)
    train = TrainConfig(epochs=2, batch_size=4, precision="fp32", device="cpu", log_every=2, ckpt_every=0,
                        eval_every=0, figure_every=3)
    trainer = Trainer(ToyModel(), ToyData(n=12), train=train, optim=OptimConfig(base_lr=0.05), run_dir=tmp_path,
                      config={"toy": 1}, visualizer=Drawn())
    trainer.fit()
    pngs = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert pngs == ["step_00000003.png", "step_00000006.png"]
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["figures"]
    images = events.Images("figures")
    assert sorted({e.step for e in images}) == [3, 6]  # every figure_every steps, and at the end
    assert (images[0].height, images[0].width) == (8, 12)
