"""Mutation testing of the modules where a silent bug costs most (mutmut 3; not in CI: hours on 2 CPU cores).

    pip install -e '.[mutation]'
    python tools/mutation.py                    # every target, smallest first (or: make mutation)
    python tools/mutation.py checkpoint trainer  # some targets (make mutation ARGS="checkpoint trainer")
    python tools/mutation.py --changed main     # smoke: only the functions a change touches (make mutation-changed)
    python tools/mutation.py probe --mutants NAME...  # rerun a run's survivors after writing tests for them

Each target mutates one module (or some of its functions) and runs only the tests that guard it, in a fresh scratch
copy of the project under ``runs/mutation/<target>/`` (mutmut works in a copy of its own, ``mutants/``). Inspect a
survivor there with ``mutmut show <name>``. The script ends with one Markdown table row per target (the table in
docs/testing.md) and the names of the surviving mutants.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "runs" / "mutation"


# name -> (module, mutant-name globs (None: every function), tests). Mutant names are
# "<module>.x_<function>__mutmut_<n>", methods "<module>.xǁ<Class>ǁ<method>__mutmut_<n>". Each target runs the tests
# written for it, not every test that happens to call it: mutmut runs each mutant against the tests that reach it,
# and a Trainer test on every checkpoint mutant would cost minutes each.
ENGINE = "tests/test_engine.py::test_"
MODELS = "tests/test_models.py::test_"
PRETEXT = "tests/test_pretext.py::test_"
TARGETS = {
    "checkpoint": ("mask3d_vit/checkpoint.py", None,
                   ["tests/test_checkpoint.py", ENGINE + "checkpoint_needing_pickle_is_refused"]),
    # The geometry every map shares: resizes, flips, the evaluation crop (not reprs and jitter wrappers).
    "transforms": ("mask3d_vit/data/transforms.py",
                   ["*.x_hflip__*", "*.x_center_box__*", "*ǁCenterResizedCropǁ__call__*", "*.x_eval_transform__*",
                    "*.x_resize_depth__*"],
                   ["tests/test_transforms.py"]),
    # The numbers, not the report tables; not the two-process test (a subprocess does not report the code it ran).
    "metrics-seg": ("mask3d_vit/eval/segmentation.py",
                    ["*.x_confusion_matrix__*", "*.x_segmentation_metrics__*", "*ǁSegmentationMeterǁupdate__*",
                     "*ǁSegmentationMeterǁcompute__*"],
                    ["tests/test_metrics.py", "-k", "not two_processes"]),
    "metrics-depth": ("mask3d_vit/eval/depth.py",
                      ["*.x_depth_errors__*", "*.x_median_scale__*", "*ǁDepthMeterǁupdate__*",
                       "*ǁDepthMeterǁcompute__*"],
                      ["tests/test_metrics.py", "-k", "not two_processes"]),
    # Accumulation: the optimizer step over micro-batches, with its NaN guard.
    "trainer": ("mask3d_vit/engine/trainer.py", ["*ǁTrainerǁ_train_step__*"],
                [ENGINE + "accumulation_matches_big_batch", ENGINE + "nan_loss_steps_are_skipped_and_never_saved",
                 ENGINE + "nan_policy_stop_raises_with_frame_ids"]),
    # Resume: restoring a checkpoint and the RNG streams (each mutant runs the 20-second resume test).
    "trainer-resume": ("mask3d_vit/engine/trainer.py",
                       ["*ǁTrainerǁload__*", "*.x__rng_state__*", "*.x__set_rng_state__*", "*.x__as_tuple__*"],
                       [ENGINE + "resume_mid_run_is_bitwise_exact",
                        ENGINE + "optimizer_is_fused_and_resumes_a_for_loop_state"]),
    # Masking and the losses, through the model's public behaviour.
    "mask3d": ("mask3d_vit/models/mask3d.py",
               ["*.x_random_masking__*", "*.x_patchify__*", "*.x_unpatchify__*", "*.x_take_tokens__*",
                "*ǁMask3Dǁ_depth_loss__*", "*ǁMask3Dǁ_rgb_loss__*", "*ǁMask3Dǁ_clean_depth__*"],
               [MODELS + name for name in (
                   "random_masking_counts_and_independence", "random_masking_follows_global_rng_state",
                   "rgb_and_depth_masks_are_independent", "encoder_sees_exactly_the_visible_tokens",
                   "non_square_and_off_nominal_sizes", "add_fusion_uses_depth_only_at_visible_depth_patches",
                   "invalid_depth_is_excluded", "depth_beyond_max_depth_and_missing_valid_key",
                   "frames_without_valid_depth_give_a_finite_zero_loss", "depth_loss_closed_form",
                   "masked_loss_region_ignores_visible_patches", "masked_loss_region_closed_form",
                   "mae_rgb_loss_uses_hidden_patches_and_normalised_pixels", "rgb_plus_depth_loss_is_weighted_sum",
                   "bad_inputs_raise_clear_errors")]),
    # The masking schemes, the depth prior and the loss regions (added after the first round).
    "mask3d-schemes": ("mask3d_vit/models/mask3d.py",
                       ["*.x_keep_lowest__*", "*.x_block_noise__*", "*.x_interpolate_visible_depth__*",
                        "*ǁMask3Dǁdraw_masks__*", "*ǁMask3Dǁloss_region_mask__*", "*ǁMask3Dǁforward_loss__*",
                        "*ǁMask3Dǁdepth_target_map__*", "*ǁMask3Dǁdepth_patch_errors__*"],
                       [MODELS + name for name in (
                           "block_masks_on_an_odd_grid_keep_whole_clipped_squares",
                           "log_depth_prior_spreads_log_depth_and_skips_a_visible_patch_without_valid_pixels",
                           "loss_regions_average_valid_pixels_of_their_patches_in_log_space",
                           "random_masking_counts_and_independence", "depth_loss_closed_form",
                           "masked_loss_region_closed_form", "frames_without_valid_depth_give_a_finite_zero_loss",
                           "rgb_plus_depth_loss_is_weighted_sum", "without_depth_input_every_depth_patch_is_hidden",
                           "mae_rgb_loss_uses_hidden_patches_and_normalised_pixels")]
                       + [PRETEXT + name for name in (
                           "interpolation_baseline_by_hand",
                           "interpolation_matches_a_pixel_by_pixel_reference_on_an_asymmetric_grid",
                           "complementary_masks_never_show_colour_and_depth_of_one_patch",
                           "block_masks_show_and_hide_depth_in_whole_squares",
                           "depth_hidden_loss_region_scores_only_patches_without_depth_input",
                           "interpolation_prior_is_the_start_of_the_depth_prediction")]),
    # The registries: lookups, registration, the declared parts (not the CLI runs that use them: seconds each).
    "data-registry": ("mask3d_vit/data/registry.py", None,
                      ["tests/test_format_registry.py", "-k", "not pretraining and not command_line"]),
    "task-registry": ("mask3d_vit/tasks/registry.py", None,
                      ["tests/test_task_registry.py", "-k", "not through_the_cli and not reads_the_checkpoint"]),
    # The diagnostics and the floors the probes are judged against (not the `diagnose` command: a pre-training run).
    "pretext": ("mask3d_vit/eval/pretext.py", None, ["tests/test_pretext.py", "-k", "not command"]),
    "baselines": ("mask3d_vit/eval/baselines.py", None, ["tests/test_baselines.py"]),
    # The closed-form probes: cell targets, ridge sums and solutions, the probe, the report.
    "probe": ("mask3d_vit/eval/probe.py", None, ["tests/test_probe.py"]),
    # The protocol's logic: its variants, plan and cache keys, scene checks, control, summaries (not the runs it
    # starts, minutes each, nor its wall-time estimate, a cost model bounded by ratios).
    "compare": ("mask3d_vit/tasks/compare.py",
                [f"*.x_{f}__*" for f in ("objective_variants", "control_config", "check_scenes", "pretrain_steps",
                                         "transfer_key", "transfer_runs", "_with_steps", "variant_pretrain", "slug",
                                         "plan_runs", "_recorded", "_without_bookkeeping", "_cached",
                                         "probe_floor_note", "summarize", "_source_frames")],
                ["tests/test_transfer_bench.py", "-k", "not quick_protocol and not rerun_keeps and not records_continue"]),
    # The interrupt path: the signal handler, its installation and restoration, the all-ranks stop decision.
    "trainer-interrupt": ("mask3d_vit/engine/trainer.py", ["*ǁStopSignalsǁ*", "*ǁTrainerǁ_stop_requested__*"],
                          ["tests/test_interrupt.py", "-k", "stop_signals or second_ctrl_c or sigterm_then_ctrl_c "
                           "or restored_after"]),
}
SCOPES = {"transforms": "geometry", "metrics-seg": "the metrics", "metrics-depth": "the metrics",
          "trainer": "accumulation", "trainer-resume": "resume", "mask3d": "masking and losses",
          "mask3d-schemes": "mask schemes, depth prior, loss regions", "compare": "the protocol's logic",
          "trainer-interrupt": "the interrupt path"}
COUNTED = ("killed", "survived", "timeout", "suspicious", "no tests", "segfault")
# Any other status (e.g. "check was interrupted by user": a mutant that raised KeyboardInterrupt in pytest) counts
# as not killed: a test must fail on it, not end the session.


def mutmut_config(module: str, tests: list[str]) -> str:
    """The ``[tool.mutmut]`` section for one target."""
    quoted = ", ".join(f'"{t}"' for t in tests)
    return (f'\n[tool.mutmut]\nsource_paths = ["mask3d_vit"]\nonly_mutate = ["{module}"]\n'
            f'pytest_add_cli_args_test_selection = [{quoted}]\npytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
            # The benchmark scripts some tests load (tests/test_transfer_bench.py) beside the package.
            'also_copy = ["benchmarks"]\n'
            # torch starts threads at import: forking straight from a process that ran the tests can hang.
            f'process_isolation = "forkserver"\n')


def prepare(name: str, module: str, tests: list[str]) -> Path:
    """A fresh scratch copy of the package, the tests, the benchmarks and pyproject.toml with the target's mutmut section."""
    work = SCRATCH / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "mask3d_vit", work / "mask3d_vit", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copytree(ROOT / "benchmarks", work / "benchmarks", ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in pyproject:
        raise SystemExit("pyproject.toml has its own [tool.mutmut] section; this script writes one per target")
    (work / "pyproject.toml").write_text(pyproject + mutmut_config(module, tests))
    return work


def changed_functions(module: str, base: str) -> list[str]:
    """Mutant-name globs of the functions and methods of ``module`` whose lines differ from git revision ``base``
    (the working tree included)."""
    diff = subprocess.run(["git", "diff", "-U0", base, "--", module], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout
    lines = set()
    for start, count in re.findall(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, flags=re.M):
        lines.update(range(int(start), int(start) + (1 if count == "" else max(int(count), 1))))
    tree = ast.parse((ROOT / module).read_text())
    globs = []
    for node in tree.body:
        methods = [(f"*ǁ{node.name}ǁ", n) for n in node.body] if isinstance(node, ast.ClassDef) else [("*.x_", node)]
        for prefix, fn in methods:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines & set(
                    range(fn.lineno, fn.end_lineno + 1)):
                globs.append(f"{prefix}{fn.name}__*")
    return globs


def changed_targets(base: str) -> tuple[dict[str, list[str]], list[str]]:
    """-> (target -> the mutant globs of its changed functions, the changed modules no target covers), the change
    being this checkout against its merge base with ``base`` (what merging it would bring)."""
    base = subprocess.run(["git", "merge-base", base, "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    changed = subprocess.run(["git", "diff", "--name-only", base, "--", "mask3d_vit"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    selected, uncovered = {}, []
    for module in (m for m in changed if m.endswith(".py") and (ROOT / m).is_file()):
        functions = changed_functions(module, base)
        found = False
        for name, (target_module, globs, _) in TARGETS.items():
            if target_module != module:
                continue
            found = True
            # a changed function is smoke-tested only by a target that mutates it
            picked = [g for g in functions
                      if globs is None or any(fnmatch(g.replace("*", "m", 1).replace("__*", "__mutmut_1"), p)
                                              for p in globs)]
            if picked:
                selected[name] = picked
        if not found:
            uncovered.append(module)
    return selected, uncovered


def run_target(name: str, python: str, only: list[str] | None = None) -> dict:
    """Run mutmut on one target with ``python`` (on the mutants ``only`` names, default the target's);
    returns its counts by status and the names not killed."""
    module, globs, tests = TARGETS[name]
    globs = only or globs
    work = prepare(name, module, tests)
    # The scratch copy must be the code under test: no other checkout on the path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "mutmut", "run", "--max-children", "1", *(globs or [])], cwd=work, env=env,
                   check=True)
    listing = subprocess.run([python, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env, check=True,
                             capture_output=True, text=True).stdout
    status = dict(re.findall(r"^\s+(\S+): (.+)$", listing, flags=re.M))
    if globs:
        status = {k: v for k, v in status.items() if any(fnmatch(k, g) for g in globs)}
    counts = {s: sum(v == s for v in status.values()) for s in COUNTED}
    counts["other"] = sum(v not in COUNTED for v in status.values())
    return {"name": name, "module": module, "tests": tests, "globs": globs, "counts": counts,
            "survivors": sorted(k for k, v in status.items() if v not in ("killed", "timeout"))}


def table_row(r: dict, date: str) -> str:
    c = r["counts"]
    total = sum(c.values())
    killed = c["killed"] + c["timeout"]
    score = f"{100 * killed / total:.0f} %" if total else "-"
    if not r["globs"]:
        scope = "every function"
    elif r["globs"] == TARGETS[r["name"]][1]:
        scope = SCOPES[r["name"]]
    else:
        named = all("*" not in g for g in r["globs"])
        scope = f"{len(r['globs'])} named mutants" if named else ", ".join(r["globs"])
    return (f"| `{r['module']}` ({scope}) | {total} | {killed} | {total - killed} | {score} | "
            f"`python tools/mutation.py {r['name']}` | {date} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all, in this order)")
    parser.add_argument("--changed", metavar="BASE", help="mutate only the functions that differ from git revision "
                        "BASE, in the targets that cover them (a smoke run of minutes)")
    parser.add_argument("--mutants", nargs="+", metavar="NAME", help="only these mutants (names or globs, e.g. the "
                        "survivors a run listed, after writing the tests that should kill them); one target")
    args = parser.parse_args(argv)
    if args.mutants and len(args.targets) != 1:
        parser.error("--mutants needs exactly one target")
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    date = datetime.date.today().isoformat()
    only: dict[str, list[str] | None] = {name: args.mutants for name in args.targets or TARGETS}
    if args.changed:
        selected, uncovered = changed_targets(args.changed)
        only = {name: globs for name, globs in selected.items() if not args.targets or name in args.targets}
        for module in uncovered:
            print(f"{module}: changed, but no mutation target covers it (add one to TARGETS in {__file__})")
        if not only:
            print(f"no function of a mutation target differs from {args.changed}: nothing to mutate")
            return
        for name, globs in only.items():
            print(f"{name}: {', '.join(globs)}")
    results = [run_target(name, sys.executable, globs) for name, globs in only.items()]
    print("\n| module | mutants | killed | survived | score | command | date |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(table_row(r, date))
    for r in results:
        if r["survivors"]:
            print(f"\n{r['name']}: {len(r['survivors'])} not killed (inspect: cd {SCRATCH / r['name']} && "
                  f"mutmut show NAME)")
            print("\n".join(f"  {s}" for s in r["survivors"]))


if __name__ == "__main__":
    main()
