"""The generic loop: schedule, parameter groups, checkpoints, exact resume, NaN guard, atomic writes."""
import copy
import json
import pickle
import time

import pytest
import torch

from mask3d_vit.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, load_latest,
                                   save_checkpoint)
from mask3d_vit.engine.logger import read_metrics, training_seconds
from mask3d_vit.engine.optim import OptimConfig, build_optimizer, lr_at
from mask3d_vit.engine.trainer import NonFiniteLossError, TrainConfig, Trainer
from mask3d_vit.io import atomic_write

from toy import DetModel, ToyData, ToyModel


def make_trainer(run_dir, *, epochs=3, data=None, **train_kw):
    torch.manual_seed(0)
    train = TrainConfig(epochs=epochs, batch_size=4, precision="fp32", device="cpu", log_every=2, ckpt_every=1,
                        keep_ckpts=100, eval_every=0, **train_kw)
    optim = OptimConfig(base_lr=0.05, warmup_epochs=1)
    return Trainer(ToyModel(), data or ToyData(), train=train, optim=optim, run_dir=run_dir, config={"toy": 1})


def final_weights(run_dir):
    return load_latest(run_dir)[1]["model"]


def test_lr_schedule_warmup_then_cosine():
    cfg = OptimConfig(min_lr=1e-5)
    lrs = [lr_at(s, peak=1e-3, total=100, warmup=10, cfg=cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)
    poly = OptimConfig(schedule="poly", min_lr=0.0)
    assert lr_at(55, peak=1.0, total=100, warmup=10, cfg=poly) == pytest.approx(0.5)


def test_an_extended_schedule_decays_from_the_rate_it_had():
    # A run extended on resume: its decay starts at (step 50, rate 0.6) instead of (warm-up end, peak), and reaches
    # min_lr at the new end; the warm-up is not run again.
    cosine, poly = OptimConfig(min_lr=0.1), OptimConfig(schedule="poly", min_lr=0.0)
    at = lambda step, cfg: lr_at(step, peak=1.0, total=100, warmup=10, cfg=cfg, decay_from=(50, 0.6))  # noqa: E731
    assert at(50, cosine) == pytest.approx(0.6)
    assert at(75, cosine) == pytest.approx(0.1 + 0.5 * 0.5)  # halfway: (1 + cos(pi / 2)) / 2 of the way down
    assert at(100, cosine) == pytest.approx(0.1)
    assert at(60, poly) == pytest.approx(0.6 * 0.8 ** poly.poly_power)
    assert at(3, poly) == pytest.approx(0.4)  # a warm-up step: peak 1.0 x 4 / 10, the decay's start unused


def test_param_groups_skip_decay_on_norms_biases_and_named():
    model = ToyModel()
    opt = build_optimizer(model, OptimConfig(weight_decay=0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {"net.0.weight", "net.3.weight"}
    seen = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())


def test_optimizer_is_fused_and_resumes_a_for_loop_state():
    """The fused AdamW continues from optimizer state written by torch's for-loop AdamW (checkpoints of older runs)."""
    torch.manual_seed(0)
    model = ToyModel()
    fused = build_optimizer(model, OptimConfig(base_lr=1e-2))
    assert fused.defaults["fused"]
    groups = [{k: g[k] for k in ("params", "weight_decay", "lr_scale")} for g in fused.param_groups]
    loop = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), fused=False, foreach=False)
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        loop.step()
    after_loop = [p.detach().clone() for p in model.parameters()]
    # the same third step, once by each implementation from the for-loop state
    state = copy.deepcopy(loop.state_dict())
    grads = [torch.randn_like(p) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    loop.step()
    expected = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, a in zip(model.parameters(), after_loop):
            p.copy_(a)
    fused.load_state_dict(state)
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    fused.step()
    for p, e, s in zip(model.parameters(), expected, start):
        assert not torch.equal(e, s)
        torch.testing.assert_close(p.detach(), e)


def test_resume_mid_run_is_bitwise_exact(tmp_path):
    full = make_trainer(tmp_path / "full")
    full.fit()
    assert full.step == 18  # 24 frames / batch 4 = 6 steps x 3 epochs
    # Continue a copy of the run from the checkpoint at step 7 (mid-epoch) in a fresh process-like trainer.
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    src = tmp_path / "full" / "checkpoints" / "step_00000007.pt"
    (part / "checkpoints" / src.name).write_bytes(src.read_bytes())
    resumed = make_trainer(part)
    resumed.fit(resume="auto")
    a, b = final_weights(tmp_path / "full"), final_weights(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["step"] for r in read_metrics(part) if "loss" in r]
    assert steps == sorted(steps) and steps[0] > 7


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
    make_trainer(tmp_path, epochs=1).fit()
    newest = list_checkpoints(tmp_path)[0]
    newest.write_bytes(newest.read_bytes()[: 200])
    path, state = load_latest(tmp_path)
    assert path != newest and state["step"] == 5
    assert "truncated or corrupt" in caplog.text


def test_checkpoint_needing_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": pickle.PickleError("x")}, path)
    with pytest.raises(CheckpointError, match="refused: the file needs arbitrary unpickling"):
        load_checkpoint(path)


def test_keep_last_k(tmp_path):
    for step in range(1, 6):
        save_checkpoint({"model": {}, "step": step}, tmp_path, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005.pt", "step_00000004.pt"]


def test_nan_loss_steps_are_skipped_and_never_saved(tmp_path):
    trainer = make_trainer(tmp_path, data=ToyData(nan_ids={3}))
    result = trainer.fit()
    assert result["skipped_steps"] == 3  # frame 3 appears once per epoch
    for t in final_weights(tmp_path).values():
        assert torch.isfinite(t).all()


def test_nan_policy_stop_raises_with_frame_ids(tmp_path):
    with pytest.raises(NonFiniteLossError, match="toy-3"):
        make_trainer(tmp_path, data=ToyData(nan_ids={3}), nan_policy="stop").fit()


def test_batch_must_divide_across_accumulation(tmp_path):
    with pytest.raises(ValueError, match="multiple of processes x accum_steps"):
        make_trainer(tmp_path, accum_steps=3)


def test_accumulation_matches_big_batch(tmp_path):
    """2 x 2 accumulated micro-batches give the same step as one batch of 4 (no dropout/masking randomness).

    Every parameter and every optimizer state tensor is compared, and the logged loss and gradient norm: AdamW's
    update hides a constant gradient scale, but its first moment and the pre-clipping norm do not. Clipping is off
    so that a doubled gradient cannot be clipped back to the same norm.
    """
    states, logs = [], []
    for accum in (1, 2):
        torch.manual_seed(0)
        t = Trainer(DetModel(), ToyData(), train=TrainConfig(epochs=1, batch_size=4, accum_steps=accum,
                                                             precision="fp32", device="cpu", eval_every=0),
                    optim=OptimConfig(base_lr=0.05, clip_grad=0.0), run_dir=tmp_path / f"a{accum}", config={})
        t.fit()
        states.append((t.model.state_dict(), t.optimizer.state_dict()))
        logs.append(read_metrics(tmp_path / f"a{accum}"))
    (model_1, optim_1), (model_2, optim_2) = states
    assert model_1.keys() == model_2.keys()
    for k in model_1:
        torch.testing.assert_close(model_2[k], model_1[k], rtol=1e-5, atol=1e-6, msg=k)
    assert optim_1["state"].keys() == optim_2["state"].keys() and len(optim_1["state"]) == 7  # every parameter
    for p in optim_1["state"]:
        assert optim_1["state"][p].keys() == optim_2["state"][p].keys()
        for k in optim_1["state"][p]:
            torch.testing.assert_close(optim_2["state"][p][k], optim_1["state"][p][k], rtol=1e-5, atol=1e-7,
                                       msg=f"param {p} {k}")
    assert logs[0] and len(logs[0]) == len(logs[1])
    for a, b in zip(logs[0], logs[1]):
        for key in ("loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (key, a, b)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"new partial")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_worker_processes_produce_the_same_samples(tmp_path):
    """Augmentation is seeded per (seed, epoch, index), so DataLoader workers change nothing (exact resume)."""
    from mask3d_vit.engine.data import ResumableSampler, SeededDataset, make_loader
    batches = []
    for workers in (0, 2):
        data = SeededDataset(ToyData(), seed=5)
        data.epoch = 1
        sampler = ResumableSampler(len(data), shuffle=True, seed=5)
        sampler.set_epoch(1, start=4)
        loader = make_loader(data, batch_size=4, sampler=sampler, num_workers=workers, seed=5)
        batches.append([b["x"] for b in loader])
    assert len(batches[0]) == 5
    for a, b in zip(*batches):
        assert torch.equal(a, b)


def test_img_per_s_counts_training_time_only(tmp_path, monkeypatch):
    """Each step takes 1 s of a fake clock and each evaluation 50 s: every record reads batch_size img/s, also the
    first one after an evaluation (the logger used to restart its timer there and read 2x too high here)."""
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])

    class OneSecondModel(DetModel):
        def forward(self, batch):
            now[0] += 1.0
            return super().forward(batch)

    def slow_evaluator(model):
        now[0] += 50.0
        return {"score": 1.0}

    torch.manual_seed(0)
    Trainer(OneSecondModel(), ToyData(), train=TrainConfig(epochs=3, batch_size=4, precision="fp32", device="cpu",
                                                           log_every=4, eval_every=1),
            optim=OptimConfig(base_lr=0.05), run_dir=tmp_path, config={}, evaluator=slow_evaluator).fit()
    rates = [r["img_per_s"] for r in read_metrics(tmp_path) if "img_per_s" in r]
    assert len(rates) == 5  # steps 4, 8, 12, 16, 18; evaluations after steps 6, 12, 18
    assert rates == [4.0] * 5
    assert training_seconds(tmp_path, 4) == 18.0  # 18 steps of 1 s; the 150 s of evaluations are left out


def test_training_seconds_sum_every_logged_interval_of_a_resumed_run(tmp_path):
    # Logged every 20 steps at batch 32, an evaluation record at step 20, resumed at step 40 and stopped at 45.
    records = [{"step": 20, "img_per_s": 64.0}, {"step": 20, "eval/val_loss": 1.0}, {"step": 40, "img_per_s": 32.0},
               {"step": 45, "img_per_s": 10.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert training_seconds(tmp_path, 32) == 20 * 32 / 64 + 20 * 32 / 32 + 5 * 32 / 10
    assert training_seconds(tmp_path, 16) == (20 * 16 / 64 + 20 * 16 / 32 + 5 * 16 / 10)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/val_loss": 1.0}) + "\n")
    assert training_seconds(tmp_path, 32) is None and training_seconds(tmp_path / "absent", 32) is None


def test_max_steps_ends_the_run_and_its_schedule_early(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=8)  # 3 epochs would be 18 steps; 8 stops mid-epoch 2
    trainer.fit()
    assert trainer.step == 8 and load_latest(tmp_path)[1]["step"] == 8
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path) if "lr" in r}
    assert max(lrs) == 8
    # The cosine decay ends at step 8, not 18: the last step's rate is the 8-step schedule's.
    assert lrs[8] == pytest.approx(lr_at(7, peak=trainer.peak_lr, total=8, warmup=6, cfg=trainer.optim_cfg))


def test_resume_auto_without_a_checkpoint_warns_that_the_run_is_new(tmp_path, caplog):
    make_trainer(tmp_path / "typo", epochs=1).fit(resume="auto")
    warning = [m for r in caplog.records if r.levelname == "WARNING" and "--resume auto" in (m := r.getMessage())]
    assert len(warning) == 1
    assert str((tmp_path / "typo" / "checkpoints").resolve()) in warning[0] and "NEW run from step 0" in warning[0]
