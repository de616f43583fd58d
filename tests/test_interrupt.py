"""SIGTERM (a cluster's preemption notice) and SIGINT (Ctrl-C) stop a run at a step boundary with a checkpoint and
the command that resumes it; resumed, the run ends bitwise identical to one that never stopped."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mask3d_vit.checkpoint import list_checkpoints, load_latest
from mask3d_vit.engine.logger import read_metrics

from smoke import COMPARISON_SMOKE
from test_resume_kill import ARGS

# No periodic checkpoints: the only one before the end is the one the signal asks for.
NO_CKPT = ["train.ckpt_every=1000"]


def pretrain(*args, **popen_kw):
    cmd = [sys.executable, "-m", "mask3d_vit", *args]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen_kw)


def finish(proc):
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The final checkpoint of the run without interruption."""
    run_dir = tmp_path_factory.mktemp("straight")
    rc, out = finish(pretrain("pretrain", "--out", str(run_dir), *ARGS, *NO_CKPT))
    assert rc == 0, out
    return load_latest(run_dir)[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_prints_the_resume_command(tmp_path, straight, signum):
    victim = pretrain("pretrain", "--out", str(tmp_path / "stopped"), *ARGS, *NO_CKPT)
    deadline = time.time() + 300
    while not read_metrics(tmp_path / "stopped"):  # a logged step: training is under way
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline
        time.sleep(0.01)
    victim.send_signal(signum)
    rc, out = finish(victim)
    assert rc == 128 + signum, out
    saved = list_checkpoints(tmp_path / "stopped")
    assert len(saved) == 1, out
    step = load_latest(saved[0])[1]["step"]
    assert 0 < step < 32, "the run finished before the signal; nothing was tested"
    assert f"stopped by {signal.Signals(signum).name} at step {step}" in out
    command = shlex.split(out.split("Resume with:")[1].strip().splitlines()[0])
    assert command[:2] == ["mask3d-vit", "pretrain"]
    rc, out = finish(pretrain(*command[1:]))  # the printed command, run as python -m mask3d_vit
    assert rc == 0, out
    assert f"at step {step}" in out
    a, b = straight, load_latest(tmp_path / "stopped")[1]
    assert a["step"] == b["step"] == 32
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def stop_demo_in_pretraining(out: Path, *extra: str) -> tuple[list[str], str]:
    """Start the smoke demo in ``out``, SIGTERM it (the parent process only, as a scheduler's preemption would) once
    its pre-training logs a step, and check it stopped with one line; its arguments and output."""
    # A pre-training long enough to be stopped in (80 steps); log every step to see it under way.
    args = ["demo", "--out", str(out), *COMPARISON_SMOKE, *extra, "pretrain.train.epochs=40",
            "pretrain.train.log_every=1"]
    victim = pretrain(*args)
    deadline = time.time() + 300
    while not any(read_metrics(run) for run in out.glob("pretrain-*")):
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline
        time.sleep(0.01)
    victim.send_signal(signal.SIGTERM)
    rc, text = finish(victim)
    assert rc == 128 + signal.SIGTERM, text
    assert "Traceback" not in text, text
    return args, text


def resume_demo(text: str) -> str:
    """Run the command a stopped demo printed; its output, once it finished the demo."""
    command = shlex.split(text.split("Resume with:")[1].strip().splitlines()[0])
    assert command[:2] == ["mask3d-vit", "demo"], command
    rc, text = finish(pretrain(*command[1:]))
    assert rc == 0, text
    return text


def test_a_stopped_demo_prints_the_command_that_finishes_it(tmp_path):
    out = tmp_path / "demo"
    args, text = stop_demo_in_pretraining(out)
    step = int(text.split("stopped by SIGTERM at step ")[1].split(";")[0])
    command = shlex.split(text.split("Resume with:")[1].strip().splitlines()[0])
    assert command[:4] == ["mask3d-vit", "demo", "--out", str(out)] and command[4:] == args[3:]
    text = resume_demo(text)
    assert "continuing the demo" in text and f"at step {step}" in text, text
    assert (out / "results.md").is_file()


def test_a_signal_in_the_final_evaluation_still_stops_and_the_resumed_run_evaluates(tmp_path):
    from mask3d_vit.engine.optim import OptimConfig
    from mask3d_vit.engine.trainer import TrainConfig, Trainer, TrainingInterrupted
    from toy import ToyData, ToyModel

    calls = []

    def evaluator(model):
        calls.append(len(calls) + 1)
        if len(calls) == 1:  # the preemption notice arrives while the end-of-run evaluation runs
            os.kill(os.getpid(), signal.SIGTERM)
        return {"score": float(calls[-1])}

    def trainer():
        torch.manual_seed(0)
        return Trainer(ToyModel(), ToyData(), train=TrainConfig(epochs=1, batch_size=4, precision="fp32",
                                                                device="cpu", eval_every=0),
                       optim=OptimConfig(), run_dir=tmp_path, config={}, evaluator=evaluator)

    with pytest.raises(TrainingInterrupted) as stop:
        trainer().fit()
    assert stop.value.step == 6 == load_latest(tmp_path)[1]["step"] and stop.value.signum == signal.SIGTERM
    result = trainer().fit(resume="auto")  # nothing left to train: the final evaluation runs again
    assert result["eval/score"] == 2.0 and calls == [1, 2]


def test_a_stopped_comparison_with_workers_stops_them_and_prints_one_line(tmp_path):
    out = tmp_path / "demo"
    _, text = stop_demo_in_pretraining(out, "workers=2")
    stopped = text.split("stopped by SIGTERM in ")[1]
    assert "at step" in stopped and "(checkpoints saved;" in stopped, text
    spec = str(out / ".claims").encode()
    workers = [p for p in Path("/proc").glob("[0-9]*") if spec in _cmdline(p)]
    assert not workers, "the comparison's workers outlived it"
    resume_demo(text)
    assert (out / "results.md").is_file()


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:  # the process ended while we looked
        return b""


@pytest.fixture
def stray_sigterm_fails():
    """A SIGTERM that the code under test fails to catch fails the test instead of killing the test process (a
    killed pytest reads as a pass to mutation testing)."""
    def fail(signum, frame):
        pytest.fail("SIGTERM reached the test process's own handler")

    previous = signal.signal(signal.SIGTERM, fail)
    yield
    signal.signal(signal.SIGTERM, previous)


def signalling_trainer(tmp_path, signals, at_step=2):
    """A Trainer whose model sends itself ``signals`` during step ``at_step``'s forward pass."""
    from mask3d_vit.engine.optim import OptimConfig
    from mask3d_vit.engine.trainer import TrainConfig, Trainer
    from toy import ToyData, ToyModel

    class Signals(ToyModel):
        calls = 0

        def forward(self, batch):
            Signals.calls += 1
            if Signals.calls == at_step:
                for signum in signals:
                    os.kill(os.getpid(), signum)
            return super().forward(batch)

    torch.manual_seed(0)
    train = TrainConfig(epochs=1, batch_size=4, precision="fp32", device="cpu", ckpt_every=1000)
    return Trainer(Signals(), ToyData(), train=train, optim=OptimConfig(), run_dir=tmp_path, config={})


def test_a_second_ctrl_c_quits_at_once_without_saving_and_handlers_are_restored(tmp_path, stray_sigterm_fails):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        signalling_trainer(tmp_path, [signal.SIGINT, signal.SIGINT]).fit()
    assert list_checkpoints(tmp_path) == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_then_ctrl_c_still_saves(tmp_path, stray_sigterm_fails):
    # Ctrl-C under torchrun: the agent's SIGTERM and the terminal's SIGINT reach a worker together; it must save.
    from mask3d_vit.engine.trainer import TrainingInterrupted

    with pytest.raises(TrainingInterrupted) as stop:
        try:
            signalling_trainer(tmp_path, [signal.SIGTERM, signal.SIGINT]).fit()
        except KeyboardInterrupt:  # would end the whole pytest session instead of failing this test
            pytest.fail("SIGTERM then SIGINT quit without saving")
    assert stop.value.signum == signal.SIGTERM and stop.value.step == 2
    assert load_latest(tmp_path)[1]["step"] == 2


def test_signal_handlers_are_restored_after_a_finished_fit(tmp_path):
    def mine(signum, frame):
        pass

    previous, ctrl_c = signal.signal(signal.SIGTERM, mine), signal.getsignal(signal.SIGINT)
    try:
        trainer = signalling_trainer(tmp_path, [])
        trainer.fit()
        assert trainer.step == trainer.total_steps
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is ctrl_c
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_stop_signals_record_in_order_warn_once_and_only_a_repeated_ctrl_c_quits(caplog):
    from mask3d_vit.engine.trainer import StopSignals

    # Stand-in handlers: a signal that StopSignals fails to catch lands here, failing the test instead of killing
    # the test process; on exit they must be back.
    missed = []

    def stand_in(signum, frame):
        missed.append(signum)

    before = signal.signal(signal.SIGINT, stand_in), signal.signal(signal.SIGTERM, stand_in)
    try:
        with caplog.at_level("WARNING", logger="mask3d_vit.engine.trainer"):
            with StopSignals() as received:
                # A Python handler runs before the next bytecode of the main thread: right after each kill.
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGINT)
                except KeyboardInterrupt:  # would end the whole pytest session instead of failing this test
                    pytest.fail("the first Ctrl-C quit")
                assert received == [signal.SIGTERM, signal.SIGTERM, signal.SIGINT] and missed == []
                with pytest.raises(KeyboardInterrupt):
                    os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is stand_in and signal.getsignal(signal.SIGTERM) is stand_in
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["SIGTERM received: stopping after this step and saving a checkpoint (Ctrl-C again to quit "
                        "without saving)"]


def test_stop_signals_outside_the_main_thread_install_nothing():
    import threading

    from mask3d_vit.engine.trainer import StopSignals

    before = signal.getsignal(signal.SIGTERM)
    seen, errors = [], []

    def body():
        try:
            with StopSignals() as received:
                seen.append((list(received), signal.getsignal(signal.SIGTERM)))
        except Exception as e:  # signal.signal outside the main thread raises ValueError
            errors.append(e)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert errors == [] and seen == [([], before)]
    assert signal.getsignal(signal.SIGTERM) == before
