"""The optimizer step and resume on their own terms: what is logged, which steps are skipped, how clipping bounds the
update, what a resume restores and refuses.

The accumulation test in test_engine.py compares two runs with each other; these check absolute values, so a
mistake both runs share (a sign, an offset, a lost clip) still shows.
"""
import logging

import pytest
import torch

from mask3d_vit.checkpoint import CheckpointError, checkpoint_path, load_checkpoint
from mask3d_vit.engine.data import ResumableSampler, SeededDataset
from mask3d_vit.engine.logger import read_metrics
from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig, Trainer

from toy import DetModel, ToyData


def seeded(model_class):
    torch.manual_seed(0)
    return model_class()


def train(model, data, run_dir, *, accum=1, clip=3.0, epochs=1, log_every=1):
    trainer = Trainer(model, data, train=TrainConfig(epochs=epochs, batch_size=4, accum_steps=accum, precision="fp32",
                                                     device="cpu", eval_every=0, log_every=log_every),
                      optim=OptimConfig(base_lr=0.05, clip_grad=clip), run_dir=run_dir, config={})
    return trainer, trainer.fit()


class Reporting(DetModel):
    """Also returns outputs that are not losses: a 0-dim count and a string, which must not be logged."""

    def forward(self, batch):
        return {**super().forward(batch), "pixels": torch.tensor(8.0), "note": "not a tensor"}


class Served(ToyData):
    """Records which frames the loader asked for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.served = []

    def __getitem__(self, i):
        self.served.append(i)
        return super().__getitem__(i)


def first_frames(n):
    """The first ``n`` frames the trainer's sampler serves (seed 0, epoch 0)."""
    sampler = ResumableSampler(24, shuffle=True, seed=0)
    sampler.set_epoch(0)
    return list(sampler)[:n]


def test_logged_loss_is_the_global_batch_mean_and_only_losses_are_logged(tmp_path):
    # The first global batch, rebuilt from the sampler and the seeded dataset, scored by the initial weights.
    first = [SeededDataset(ToyData(), seed=0)[i] for i in first_frames(4)]
    batch = {k: torch.stack([s[k] for s in first]) for k in ("x", "target")}
    with torch.no_grad():
        expected = seeded(Reporting)(batch)
    for accum in (1, 2):
        train(seeded(Reporting), ToyData(), tmp_path / f"a{accum}", accum=accum)
        row = read_metrics(tmp_path / f"a{accum}")[0]
        assert row["step"] == 1 and abs(row["loss"] - expected["loss"].item()) < 1e-5, (row, expected["loss"])
        assert "pixels" not in row and "note" not in row


def test_a_step_with_one_non_finite_micro_batch_is_skipped_whole(tmp_path, caplog):
    nan_frame = first_frames(1)[0]  # in the first micro-batch: the second one must still be drawn
    data = Served(nan_ids={nan_frame})
    with caplog.at_level(logging.WARNING):
        trainer, result = train(seeded(DetModel), data, tmp_path, accum=2)
    assert result["skipped_steps"] == 1 and sorted(data.served) == list(range(24)), "every frame served once"
    rows = read_metrics(tmp_path)
    assert len(rows) == 6 and sum("loss" not in r for r in rows) == 1, "the skipped step logs no loss"
    assert any(m.startswith("non-finite loss at step 1 ") and f"toy-{nan_frame}" in m for m in caplog.messages)


class InfiniteGradient(DetModel):
    """A finite loss whose gradient is not: d sqrt(|w|) / dw at w = 0."""

    def forward(self, batch):
        out = super().forward(batch)
        return {"loss": out["loss"] + self.pos_embed.abs().sqrt().sum()}


def test_a_non_finite_gradient_norm_skips_the_step(tmp_path, caplog):
    model = seeded(InfiniteGradient)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        _, result = train(model, ToyData(), tmp_path)
    assert result["skipped_steps"] == 6 and not any("loss" in r for r in read_metrics(tmp_path))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(m.startswith("non-finite gradient norm at step 1:") for m in caplog.messages), caplog.messages


def test_clipping_bounds_the_first_moment_and_zero_disables_it(tmp_path):
    """After one AdamW step the first moment is (1 - beta1) x the (clipped) gradient: its norm shows the clip.

    (The update itself cannot: AdamW's first step moves every weight by the learning rate, whatever the scale.)
    """
    for clip in (1e-3, 0.0):
        trainer, _ = train(seeded(DetModel), ToyData(n=4), tmp_path / f"c{clip}", clip=clip)
        moment = torch.cat([s["exp_avg"].flatten() for s in trainer.optimizer.state_dict()["state"].values()])
        grad_norm = read_metrics(tmp_path / f"c{clip}")[0]["grad_norm"]  # before clipping
        assert grad_norm > 0.01
        expected = 0.1 * (clip or grad_norm)  # beta1 = 0.9 in OptimConfig
        assert abs(moment.norm().item() - expected) < 1e-3 * expected, (clip, moment.norm(), grad_norm)


def test_resume_auto_without_a_checkpoint_starts_fresh_and_says_where(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="mask3d_vit.engine.trainer"):
        trainer = Trainer(seeded(DetModel), ToyData(), train=TrainConfig(epochs=1, batch_size=4, precision="fp32",
                                                                          device="cpu", eval_every=0),
                          optim=OptimConfig(), run_dir=tmp_path, config={})
        trainer.load("auto")
    assert trainer.step == 0
    assert any(m.startswith(f"--resume auto: no checkpoint in {tmp_path / 'checkpoints'}, so this is a NEW run from "
                            f"step 0") for m in caplog.messages), caplog.messages


def test_resume_from_a_path_restores_counts_and_refuses_a_longer_run(tmp_path, caplog, capsys):
    def trainer(run_dir, epochs=2):
        return Trainer(seeded(DetModel), ToyData(nan_ids={5}), run_dir=run_dir, config={}, optim=OptimConfig(),
                       train=TrainConfig(epochs=epochs, batch_size=4, precision="fp32", device="cpu", eval_every=0,
                                         ckpt_every=1, keep_ckpts=0))

    straight = trainer(tmp_path / "a")
    assert straight.fit()["skipped_steps"] == 2  # frame 5 once per epoch
    middle, last = checkpoint_path(tmp_path / "a", 6), checkpoint_path(tmp_path / "a", 12)  # 6 steps an epoch
    # A file mid-run, or a run directory (its newest checkpoint: the run is finished, nothing is left to train).
    for source, loaded, step in ((middle, middle, 6), (tmp_path / "a", last, 12)):
        resumed = trainer(tmp_path / "b")
        result = resumed.fit(resume=str(source))
        assert f"resumed from {loaded} at step {step}\n" in capsys.readouterr().out
        assert resumed.step == 12 and result["skipped_steps"] == 2, "the skipped-step count carries over"
        for k, v in straight.model.state_dict().items():
            assert torch.equal(resumed.model.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match=r"step_00000012\.pt: step 12 is past this run's 6 steps"):
        trainer(tmp_path / "c", epochs=1).load(str(last))
    state = load_checkpoint(middle)
    state["rng"] = state["rng"] * 2  # as if written by two processes
    torch.save(state, tmp_path / "two.pt")
    with caplog.at_level(logging.WARNING):
        trainer(tmp_path / "d").load(str(tmp_path / "two.pt"))
    assert (f"{tmp_path / 'two.pt'} was written by 2 processes, now 1: RNG streams restart (resume is not bitwise "
            f"exact)") in caplog.messages
