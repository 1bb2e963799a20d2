"""Issue 21's fault cases (run table, schema, sweep), each classified before and after a change.

Every case runs in its own Python process, once against this checkout and once (with
``--before``) against another source tree, and its outcome is classified by what was observed,
never by the case's name:

- ``data loss``: rows that were written are gone or the whole table is refused;
- ``silent``: a wrong result with no error (a phantom target, a copy that trains the original);
- ``traceback``: an error, but a traceback rather than a message;
- ``unclear``: a message that does not name the cause (file, row, name), or a misleading step;
- ``clear error``: one line naming the file/row/name and the rule;
- ``handled``: the right result (repaired, skipped, resumed) with a warning where due.

Then the cost of the safer append (a check of the last byte before each fsynced row, and a
cut-back on error) is measured side by side with the other tree, interleaved, median of
``--repeats`` (the machine is shared: read ratios, not absolute times).

Example:
    # a source tree of the commit before (laws/ and callbacks/ moved into mixsampler/):
    git archive 720fdc1 | tar -x -C /tmp/before && cd /tmp/before && mkdir src \\
        && cp -r mixsampler src/ && cp -r laws src/mixsampler/ && cp -r callbacks src/mixsampler/
    python benchmarks/bench_faults.py --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

CLASSES = ("data loss", "silent", "traceback", "unclear", "clear error", "handled")
COLS = ["run", "step", "model_size", "n_tokens", "weight_a", "weight_b", "a_loss", "b_loss"]


def _row(run: str, step: int, loss: float = 3.25) -> dict:
    return {
        "run": run,
        "step": step,
        "model_size": 8,
        "n_tokens": 4352 * step,
        "weight_a": 0.25,
        "weight_b": 0.75,
        "a_loss": loss,
        "b_loss": 2.5,
    }


def _classify_error(err: BaseException, *names: str) -> tuple[str, str]:
    text = " ".join(str(err).split())
    if not isinstance(err, (ValueError, OSError)):
        return "traceback", f"{type(err).__name__}: {text[:150]}"
    if all(n in text for n in names):
        return "clear error", text[:200]
    return "unclear", f"{type(err).__name__}: {text[:200]}"


def _load(paths):
    from mixsampler.laws.runtable import load_runs

    return load_runs(paths)


# --- run-table cases ----------------------------------------------------------------------


def case_full_disk_mid_row(tmp: Path) -> tuple[str, str]:
    """A disk fills up mid-row (a real short write, RLIMIT_FSIZE), then the run resumes."""
    import resource
    import signal

    from mixsampler.laws.runtable_writer import RunTableWriter

    path = tmp / "runs.csv"
    w = RunTableWriter(path, COLS)
    w.append(_row("r1", 1))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 20, hard))
    try:
        w.append(_row("r2", 1))
    except OSError:
        pass
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    RunTableWriter(path, COLS).append_many([_row("r2", 1), _row("r3", 1)])  # space freed
    return _rows_kept(path, 3)


def case_killed_mid_row_then_resume(tmp: Path) -> tuple[str, str]:
    """A trainer killed mid-write left half a row; its resume appends the next rows."""
    from mixsampler.laws.runtable_writer import RunTableWriter

    path = tmp / "runs.csv"
    RunTableWriter(path, COLS).append(_row("r1", 1))
    with open(path, "a") as f:
        f.write("r2,1,8,4352,0.25,0.75,0.")
    RunTableWriter(path, COLS).append_many([_row("r2", 1), _row("r2", 2)])
    return _rows_kept(path, 3)


def _rows_kept(path: Path, expected: int) -> tuple[str, str]:
    try:
        n = len(_load(path))
    except Exception as err:  # the fit refuses the whole file: every row is lost to it
        return "data loss", "table refused: " + " ".join(str(err).split())[:160]
    if n < expected:
        return "data loss", f"{n} of {expected} rows readable"
    return "handled", f"{n} of {expected} rows, partial row dropped"


def case_cut_number_read(tmp: Path) -> tuple[str, str]:
    """The last row was cut inside a number (2.5 -> 2.) and has the right field count."""
    path = tmp / "runs.csv"
    path.write_text(
        ",".join(COLS) + "\nr1,1,8,4352,0.25,0.75,3.25,2.5\nr1,2,8,8704,0.25,0.75,3.25,2."
    )
    try:
        table = _load(path)
    except Exception as err:
        return _classify_error(err, "runs.csv", "row 3")
    return "silent", f"read b_loss={table.losses['b'][-1]!r} from a cut row"


def case_sweep_check_partial_row(tmp: Path) -> tuple[str, str]:
    """Every run finished, but one table ends in a cut row: does the sweep say success?"""
    plan = _plan_folder(tmp, 1)

    def finish(run, attempt):
        from mixsampler.sweep.runs import MARKER_FORMAT, config_digest, write_json_atomic

        run.table.parent.mkdir(parents=True, exist_ok=True)
        run.table.write_text(
            ",".join(COLS) + f"\n{run.name},1,8,4352,0.25,0.75,3.25,2.5\n{run.name},2,8,87"
        )
        digest = config_digest(run.config)
        marker = {"format": MARKER_FORMAT, "config_sha256": digest, "step": 2}
        write_json_atomic(run.done_path, marker)
        return 0

    result, _ = _scripted_sweep(plan, finish)
    if result.success:
        return "silent", "sweep reports success over a table the fit refuses"
    text = " ".join(result.table_problems)
    return ("clear error" if "row 3" in text else "unclear"), text[:200]


def case_domain_foo_loss(tmp: Path) -> tuple[str, str]:
    """A domain named foo_loss: its weight column also reads as a target's loss."""
    path = tmp / "runs.csv"
    cols = ["run", "step", "model_size", "n_tokens", "weight_a", "weight_foo_loss"]
    path.write_text(",".join([*cols, "a_loss", "foo_loss_loss"]) + "\nr1,1,8,100,0.2,0.8,3.0,2.0\n")
    try:
        table = _load(path)
    except Exception as err:
        return _classify_error(err, "runs.csv", "foo_loss")
    if "weight_foo" in table.targets:
        return "silent", f"phantom target weight_foo fitted; targets {list(table.targets)}"
    return "handled", f"targets {list(table.targets)}"


def case_domain_weight_x(tmp: Path) -> tuple[str, str]:
    """A domain named weight_x: its loss column weight_x_loss also reads as a weight."""
    path = tmp / "runs.csv"
    cols = ["run", "step", "model_size", "n_tokens", "weight_a", "weight_weight_x"]
    path.write_text(",".join([*cols, "a_loss", "weight_x_loss"]) + "\nr1,1,8,100,0.5,0.5,3.0,2.0\n")
    try:
        table = _load(path)
    except Exception as err:
        return _classify_error(err, "runs.csv", "'weight_x'", "begins with")
    return "silent", f"domains {list(table.domains)}"


def case_name_with_comma(tmp: Path) -> tuple[str, str]:
    """A domain named 'a,b': --min-weight a,b=0.1 and --objective a,b cannot name it."""
    from mixsampler.laws.runtable_writer import RunTableWriter

    cols = ["run", "step", "model_size", "n_tokens", "weight_a,b", "weight_c", "c_loss"]
    try:
        RunTableWriter(tmp / "runs.csv", cols)
    except Exception as err:
        return _classify_error(err, "'a,b'", "contains")
    return "unclear", "accepted; the optimizer's options cannot address it later"


def case_mixed_units(tmp: Path) -> tuple[str, str]:
    """One table counts samples (n_tokens_unit), another tokens: fitted together?"""
    head = "run,step,model_size,n_tokens,weight_a,a_loss"
    (tmp / "s.csv").write_text(head + ",n_tokens_unit\nr1,1,8,100,1.0,3.0,samples\n")
    (tmp / "t.csv").write_text(head + "\nr2,1,8,100000,1.0,2.0\n")
    try:
        table = _load([tmp / "s.csv", tmp / "t.csv"])
    except Exception as err:
        return _classify_error(err, "t.csv", "samples")
    return "silent", f"{len(table)} rows of samples and tokens read as one D axis"


# --- sweep cases --------------------------------------------------------------------------


def _plan_folder(tmp: Path, n: int, law: str | None = None) -> Path:
    """A plan folder as `mixsampler plan` writes it (paths naming the folder)."""
    import yaml

    plan = tmp / "plan"
    (plan / "configs").mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"r{i}"
        cfg = {
            "model": {"class_path": "json.JSONDecoder"},
            "trainer": {
                "default_root_dir": str(plan / "logs" / name),
                "callbacks": [
                    {
                        "class_path": "mixsampler.callbacks.DomainLossLogger",
                        "init_args": {"path": str(plan / "runs" / f"{name}.csv")},
                    }
                ],
            },
        }
        (plan / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        rows.append({"run": name, "config": str(plan / "configs" / f"{name}.yaml"), "law": law})
    with open(plan / "plan.csv", "w", newline="") as f:
        fields = ["run", "config"] + (["law"] if law else [])
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return plan


class _Handle:
    def __init__(self, run, attempt, rc):
        self.run, self.attempt, self.rc = run, attempt, rc

    def poll(self):
        return self.rc

    def stop(self, wait=True):
        pass


def _scripted_sweep(plan: Path, script, retries: int = 1):
    from mixsampler.sweep.runner import run_sweep

    started = []

    class Launcher:
        capacity = 1

        def start(self, runs, attempt):
            out = []
            for r in runs:
                started.append((r.name, attempt))
                r.log.parent.mkdir(parents=True, exist_ok=True)
                with open(r.log, "a") as f:
                    f.write(f"mixsampler train: error: {r.config}: bad value (attempt {attempt})\n")
                out.append(_Handle(r, attempt, script(r, attempt)))
            return out

    result = run_sweep(plan, launcher=Launcher(), retries=retries, poll_s=0, progress=False)
    return result, started


def case_copied_plan(tmp: Path) -> tuple[str, str]:
    """cp -r plan plan2; mixsampler sweep plan2: which folders would it train into?"""
    from mixsampler.sweep.runs import read_plan_dir

    plan = _plan_folder(tmp, 2)
    copy = tmp / "plan2"
    shutil.copytree(plan, copy)
    try:
        runs = read_plan_dir(copy)
    except Exception as err:
        return _classify_error(err, "plan2", "copied")
    inside = [r for r in runs if copy.resolve() in r.run_dir.resolve().parents]
    if len(inside) < len(runs):
        return "silent", f"{len(runs) - len(inside)} run(s) would train into {plan.name}/"
    return "handled", "the copy trains itself"


def case_usage_error_retried(tmp: Path) -> tuple[str, str]:
    """A trainer exits 2 (a bad config value): retried? its message shown?"""
    plan = _plan_folder(tmp, 1)
    result, started = _scripted_sweep(plan, lambda r, a: 2)
    summary = result.summary()
    if len(started) > 1:
        return "unclear", f"{len(started)} attempts of a usage error"
    shown = "bad value" in summary
    return ("clear error" if shown else "unclear"), f"1 attempt; message shown: {shown}"


def case_retry_order(tmp: Path) -> tuple[str, str]:
    """'attempt 2 resumes' is announced: does it run next, or after every other run?"""
    plan = _plan_folder(tmp, 3)
    _, started = _scripted_sweep(plan, lambda r, a: 1 if (r.name, a) == ("r0", 1) else 0)
    nxt = started[1] if len(started) > 1 else None
    if nxt == ("r0", 2):
        return "handled", f"order {started}"
    return "unclear", f"announced retry ran at position {started.index(('r0', 2)) + 1}: {started}"


def case_next_line_law(tmp: Path) -> tuple[str, str]:
    """A plan sized for the additive law: which law does the closing 'next:' line suggest?"""
    plan = _plan_folder(tmp, 1, law="additive")
    result, _ = _scripted_sweep(plan, lambda r, a: 1, retries=0)
    if "--law additive" in result.next_command:
        return "handled", result.next_command.split(" -o ")[0][-40:]
    return "silent", f"suggests {result.next_command.split('--law ')[1].split()[0]}"


def case_missing_class_path(tmp: Path) -> tuple[str, str]:
    """A config's model module is not importable in the trainer: what does train say?"""
    import yaml

    cfg = tmp / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"class_path": "my_models_not_installed.LM"},
                "trainer": {"default_root_dir": str(tmp / "run"), "max_steps": 1},
            }
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "mixsampler.cli", "train", str(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = res.stderr.strip()
    last = err.splitlines()[-1] if err else ""
    if "Traceback" in err:
        return "traceback", f"exit {res.returncode}: {last[:150]}"
    if "my_models_not_installed" in last and res.returncode == 3:
        return "clear error", f"exit 3 (sweep stops): {last[:150]}"
    return "unclear", f"exit {res.returncode}: {last[:150]}"


def case_corrupt_last_checkpoint(tmp: Path) -> tuple[str, str]:
    """last.ckpt truncated, a good step=4.ckpt beside it: what does the resume load?"""
    import torch

    ck = tmp / "run" / "checkpoints"
    ck.mkdir(parents=True)
    for name in ("step=4.ckpt", "last.ckpt"):
        torch.save({"global_step": 4, "w": torch.arange(10000.0)}, ck / name)
    data = (ck / "last.ckpt").read_bytes()
    (ck / "last.ckpt").write_bytes(data[: len(data) // 2])
    try:  # the choice train() makes, then the load Lightning does with it
        import warnings

        from mixsampler.sweep.train import newest_good_checkpoint

        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            chosen = newest_good_checkpoint(tmp / "run")
    except ImportError:
        from mixsampler.sweep.runs import last_checkpoint

        chosen = last_checkpoint(tmp / "run")
    try:
        torch.load(chosen, weights_only=False)
    except Exception as err:
        return "traceback", f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"
    return "handled", f"resumed from {chosen.name}, last.ckpt renamed .corrupt"


def case_read_only_run_folder(tmp: Path) -> tuple[str, str]:
    """A run folder the sweep cannot write (a read-only folder): what does the sweep say?"""
    import yaml

    plan = _plan_folder(tmp, 1)
    cfgp = plan / "configs" / "r0.yaml"
    cfg = yaml.safe_load(cfgp.read_text())
    if os.geteuid() == 0:
        ro = Path("/sys")  # refuses new files even to root in most containers
    else:
        ro = tmp / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    cfg["trainer"]["default_root_dir"] = str(ro / "logs" / "r0")
    cfgp.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "mixsampler.cli", "sweep", str(plan), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = res.stderr.strip()
    if "Traceback" in err:
        return "traceback", err.splitlines()[-1][:150]
    lines = [x for x in (err + "\n" + res.stdout).splitlines() if "error" in x.lower()]
    if res.returncode != 0 and lines and str(ro) in lines[0]:
        return "clear error", lines[0][:180]
    return "unclear", f"exit {res.returncode}: {(lines or [res.stdout[-150:]])[0][:150]}"


CASES = {
    name[len("case_") :].replace("_", "-"): fn
    for name, fn in sorted(globals().items())
    if name.startswith("case_")
}


# --- the cost of the safer append -----------------------------------------------------------


def time_appends(tmp: Path, rows: int) -> float:
    """Seconds per appended row (validated, one fsynced write each)."""
    from mixsampler.laws.runtable_writer import RunTableWriter

    w = RunTableWriter(tmp / "t.csv", COLS)
    t0 = time.perf_counter()
    for i in range(rows):
        w.append(_row("r1", i + 1))
    return (time.perf_counter() - t0) / rows


# --- driver -------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        if args.case == "append":
            print(json.dumps({"seconds": time_appends(Path(d), args.rows)}))
            return
        try:
            cls, detail = CASES[args.case](Path(d))
        except Exception as err:  # the case itself crashed: that is the outcome
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            cls, detail = "traceback", last[:160]
        print(json.dumps({"class": cls, "detail": detail}))


def _run(case: str, src: str | None, extra: list[str] = ()) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, __file__, "--case", case, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tempfile.gettempdir(),  # never import this checkout by accident from the cwd
    )
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"class": "traceback", "detail": (res.stderr.strip().splitlines() or ["?"])[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", help="source tree to compare with (holds mixsampler/)")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=300, help="rows per append timing")
    p.add_argument("--repeats", type=int, default=5, help="interleaved append timings")
    args = p.parse_args()
    if args.case:
        _child(args)
        return
    trees = ([("before", args.before)] if args.before else []) + [("after", None)]
    counts = {name: Counter() for name, _ in trees}
    print(f"{'case':<28} " + " | ".join(f"{name:<60}" for name, _ in trees))
    for case in CASES:
        cells = []
        for name, src in trees:
            out = _run(case, src)
            counts[name][out["class"]] += 1
            cells.append(f"{out['class']}: {out['detail']}"[:60].ljust(60))
        print(f"{case:<28} " + " | ".join(cells), flush=True)
    for name, _ in trees:
        c = counts[name]
        print(f"{name}: {len(CASES)} cases: " + ", ".join(f"{c[k]} {k}" for k in CLASSES if c[k]))
    times: dict[str, list[float]] = {name: [] for name, _ in trees}
    for _ in range(args.repeats):
        for name, src in trees:
            extra = ["--rows", str(args.rows)]
            times[name].append(_run("append", src, extra)["seconds"])
    med = {name: statistics.median(v) for name, v in times.items()}
    line = ", ".join(f"{name} {med[name] * 1e6:.0f} us" for name in med)
    print(f"append with fsync, per row (median of {args.repeats}, {args.rows} rows): {line}")
    if "before" in med:
        print(f"after/before: {med['after'] / med['before']:.2f}x (shared, noisy machine)")


if __name__ == "__main__":
    main()
