"""A new user's first day (issue 26): run folders are never harmed by a command that fails, and the command line
says what it does (what it builds, how long it trains, how a longer run goes on) and fails fast on bad arguments."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import pytest

from mask3d_vit.checkpoint import list_checkpoints, load_latest
from mask3d_vit.cli import main
from mask3d_vit.config import load_config
from mask3d_vit.data.build import build_dataset
from mask3d_vit.engine.logger import read_metrics
from mask3d_vit.tasks.pretrain import PretrainConfig

from test_resume_kill import ARGS

# 32 frames in batches of 4: 8 steps per epoch.
PRETRAIN = [a for a in ARGS if not a.startswith(("train.epochs", "train.keep_ckpts"))] + ["train.keep_ckpts=1"]
FINETUNE = ["data.sources=[{format: synthrooms, num_frames: 4, seed: 0}]", "data.size=[32,48]",
            "model.encoder=vit_micro_patch16", "model.img_size=[32,48]", "model.neck_channels=16",
            "model.head_channels=16", "train.batch_size=4", "train.device=cpu", "train.precision=fp32",
            "train.max_steps=2", "eval.split=train"]


def run(*argv) -> tuple[int, str, str]:
    """``mask3d-vit ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def snapshot(run_dir) -> dict:
    """Every file of a run folder, by path: its bytes."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A finished seg run and a finished depth run (2 steps each)."""
    runs = {}
    for task in ("seg", "depth"):
        runs[task] = tmp_path_factory.mktemp(task) / "run"
        code, out, err = run("finetune", task, "--out", runs[task], *FINETUNE)
        assert code == 0, out + err
    return runs


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A pre-training run of train.max_steps=12 where train.epochs=1 would be 8 steps; (run dir, its stdout)."""
    run_dir = tmp_path_factory.mktemp("short") / "run"
    code, out, err = run("pretrain", "--out", run_dir, *PRETRAIN, "train.epochs=1", "train.max_steps=12")
    assert code == 0, out + err
    return run_dir, out


@pytest.mark.parametrize("command, victim", [(["finetune", "depth"], "seg"), (["finetune", "seg"], "depth"),
                                             (["pretrain"], "seg")])
def test_resuming_a_run_of_another_task_is_one_line_and_harms_nothing(finetuned, command, victim):
    before = snapshot(finetuned[victim])
    code, out, err = run(*command, "--out", finetuned[victim], "--resume", "auto")
    assert code == 1, out + err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err, err
    task = command[-1]
    assert f"task {victim!r}" in line and f"task {task!r}" in line, line
    assert f"mask3d-vit finetune {victim} --out {finetuned[victim]} --resume auto" in line, line
    assert snapshot(finetuned[victim]) == before  # config.yaml byte for byte, checkpoints, metrics


def test_resume_overrides_that_contradict_the_run_are_refused_in_one_line(finetuned):
    before = snapshot(finetuned["seg"])
    code, out, err = run("finetune", "seg", "--out", finetuned["seg"], "--resume", "auto",
                         "model.encoder=vit_tiny_patch16", "model.neck_channels=16", "train.max_steps=4")
    assert code == 1, out + err
    line = err.strip()
    assert "\n" not in line and "model.encoder=vit_tiny_patch16 (the run has vit_micro_patch16)" in line, line
    assert "neck_channels" not in line  # the same value as the run's: no contradiction
    assert snapshot(finetuned["seg"]) == before


def test_a_start_that_fails_before_step_0_leaves_nothing_resume_takes_for_a_run(tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run("pretrain", "--out", run_dir, *PRETRAIN, "train.max_steps=-1")
    assert code == 1 and "train.max_steps=-1" in err, out + err
    assert not (run_dir / "config.yaml").exists()
    # The user fixes the command and keeps --resume auto (as a SLURM script does): a new run with the new settings.
    code, out, err = run("pretrain", "--out", run_dir, "--resume", "auto", *PRETRAIN, "train.epochs=1")
    assert code == 0, out + err
    assert load_latest(run_dir)[1]["step"] == 8
    assert load_config(PretrainConfig, run_dir / "config.yaml").train.max_steps == 0


def test_max_steps_is_the_number_of_steps_and_the_log_says_which_limit_won(short_run):
    run_dir, out = short_run
    assert load_latest(run_dir)[1]["step"] == 12  # not the 8 steps of train.epochs=1
    assert max(r["step"] for r in read_metrics(run_dir)) == 12
    assert "training 12 steps of 4 frames (train.max_steps=12, 1.5 epochs of 8 steps per epoch" in out, out
    assert "train.epochs is not used" in out


def test_what_is_built_is_printed_before_the_first_log_line(short_run):
    _, out = short_run
    lines = out.splitlines()
    first_log = next(i for i, line in enumerate(lines) if line.startswith("step 1/12"))
    before = "\n".join(lines[:first_log])
    assert "model: Mask3D (vit_micro_patch16), 0." in before and " M parameters" in before, before
    assert "data: 32 training frames at 32x48 from synthrooms" in before, before
    assert "training 12 steps" in before and "step 1 took" in before, before


def test_extending_a_finished_run_goes_on_from_its_learning_rate_without_a_jump(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run[0], run_dir)
    code, out, err = run("pretrain", "--out", run_dir, "--resume", "auto", "train.max_steps=20")
    assert code == 0, out + err
    assert "schedule: this run was 12 steps and is now 20" in out and "without warming up again" in out, out
    lr = {r["step"]: r["lr"] for r in read_metrics(run_dir) if "lr" in r}
    assert sorted(lr) == list(range(1, 21))
    tail = [lr[s] for s in range(12, 21)]
    assert all(a > b for a, b in zip(tail, tail[1:])), tail  # decays on from step 12's rate, never up again
    assert f"from {lr[12]:.3g}, the rate of step 12" in out, out


def test_diagnose_prints_the_frames_it_scored(short_run):
    run_dir, _ = short_run
    code, out, err = run("diagnose", run_dir, "--batches", "5", "--batch-size", "8")
    assert code == 0, out + err
    cfg = load_config(PretrainConfig, run_dir / "config.yaml")
    n = len(build_dataset(cfg.data, split="val", train=False))
    assert 8 < n < 5 * 8  # fewer frames than 5 batches of 8
    assert f"({n} validation frames: {-(-n // 8)} batches of up to 8)" in out, out


def test_eval_keeps_the_runs_own_evaluation(finetuned):
    run_dir = finetuned["seg"]
    trained = (run_dir / "eval_train.json").read_bytes()
    code, out, err = run("eval", "--ckpt", run_dir, "eval.max_images=1")
    assert code == 0, out + err
    assert (run_dir / "eval_train.json").read_bytes() == trained
    ckpt = list_checkpoints(run_dir)[0]
    again = run_dir / "evals" / ckpt.stem
    assert json.loads((again / "eval_train.json").read_text()) != json.loads(trained)  # one frame, not four
    assert "max_images: 1" in (again / "eval_config.yaml").read_text()
    assert f"wrote {again / 'eval_train.json'}" in out


def test_bad_arguments_fail_in_one_line_before_torch_is_imported(tmp_path):
    # A fresh interpreter: this test process imported torch long ago.
    script = """
import sys
from mask3d_vit.cli import main
for argv in ([["pretrain", "--config", "pretrain_synth_tni"], ["pretrain", "--init-from", "nosuch.pth"],
              ["finetune", "seg", "--resume", "nosuch/step_1.pt"], ["eval", "--ckpt", "nosuch"],
              ["diagnose", "nosuch"], ["export", "nosuch", "--out", "x.safetensors"],
              ["probe", "depth", "--ceiling", "nosuch"], ["pretrain", "train.epochs"],
              ["config", "show", "finetune_synth_sg"]]):
    assert main(argv) == 1, argv
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "NO-TORCH", done.stderr
    assert len(lines) == 10 and all(line.startswith("mask3d-vit ") for line in lines[:-1]), done.stderr
    assert "(did you mean pretrain_synth_tiny?)" in lines[0] and "(did you mean finetune_synth_seg?)" in lines[8]
    assert "--init-from nosuch.pth: no such file" in lines[1] and "--resume nosuch/step_1.pt: no such" in lines[2]
    assert "--ckpt nosuch: no such" in lines[3] and "not of the form key=value" in lines[7]
