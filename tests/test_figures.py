"""Figures: one depth scale with a colour bar in metres, legends and colour bars for predictions, TensorBoard images."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig, Trainer
from mask3d_vit.io import write_png
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.viz import attach_panel, build_reconstruction_figure, colorbar_panel, depth_range, legend_panel
from mask3d_vit.viz.dense import DenseFigure, build_dense_figure

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
    assert bar.shape[0] == 96  # at least 96 px high to stay readable
    column = bar[40:80, 8].astype(int)
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


def text_rows(panel: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) row of each horizontal band holding grey-black text pixels (colour-bar hues are never grey)."""
    rgb = panel.astype(int)
    dark = ((rgb.max(-1) < 90) & (np.ptp(rgb, axis=-1) < 25)).any(1)
    bands, start = [], None
    for y, on in enumerate(list(dark) + [False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            bands.append((start, y - 1))
            start = None
    return bands


def test_colour_bar_text_grows_with_the_image_and_the_title_clears_the_top_value():
    for height in (96, 1080):
        bands = text_rows(colorbar_panel(height, 0.8, 9.7))
        title, top_value = bands[0], bands[1]
        assert title[1] < top_value[0], (height, bands)  # "depth (m)" ends above the top tick's value
        assert title[1] - title[0] + 1 >= height / 60, (height, title)  # ~8 px text on 1080 rows was unreadable


class Flat(torch.nn.Module):
    """Predicts one class (or 2 m of depth) everywhere."""

    def __init__(self, task: str):
        super().__init__()
        self.task, self.weight = task, torch.nn.Parameter(torch.zeros(()))

    def predict(self, rgb):
        b, _, h, w = rgb.shape
        return torch.full((b, h, w), 12) if self.task == "seg" else torch.full((b, 1, h, w), 2.0)


def test_fine_tuning_figures_show_validation_frames_with_titles_legend_and_colour_bar(tmp_path):
    data = DataConfig(sources=[SourceConfig("synthrooms", num_frames=2, seed=0)], size=(32, 48))
    shown = build_dataset(data, split="val", train=False, require_labels=True)[0]["rgb"]
    training_batch = {"rgb": torch.zeros(2, 3, 32, 48, dtype=torch.uint8)}  # what the trainer passes: not drawn
    seg = DenseFigure(data, split="val", class_set=get_class_set("synthrooms"))
    seg(Flat("seg"), training_batch, tmp_path / "seg.png")
    assert torch.equal(seg.frames()["rgb"][0], shown)
    with Image.open(tmp_path / "seg.png") as image:
        assert image.size[0] >= 800 and image.size[1] >= 300  # readable, not 3 x 48 px wide
    frames = seg.frames()
    fig = build_dense_figure(frames, Flat("seg").predict(frames["rgb"]), class_set=get_class_set("synthrooms"))
    assert [ax.get_title() for ax in fig.axes[:3]] == ["RGB", "ground-truth classes", "predicted classes"]
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "wall" in names and fig.legends[0].get_title().get_text() == "classes (synthrooms)"
    depth = DenseFigure(data, split="val")
    depth(Flat("depth"), training_batch, tmp_path / "depth.png")
    frames = depth.frames()
    fig = build_dense_figure(frames, Flat("depth").predict(frames["rgb"]))
    assert [ax.get_title() for ax in fig.axes[:3]] == ["RGB", "true depth", "predicted depth"]
    lo, hi = depth_range(frames["depth"].numpy(), frames["valid"].numpy())
    assert fig.axes[1].images[0].get_clim() == fig.axes[2].images[0].get_clim() == (lo, hi)
    assert fig.axes[-1].get_xlabel().startswith("depth (m), shared by these panels")
