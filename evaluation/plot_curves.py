"""Miss rate against false positives per image, on log axes like the pedestrian papers' figures.

    python -m evaluation.plot_curves runs/baseline runs/reploss [--setup Reasonable] \
        [--step N] [--out curves.png]

Each positional argument is a run's workdir (its latest `eval/<step>/`, or `--step`), an eval
directory (`.../eval/<step>`, holding `detections.json`), or `LABEL=PATH` to name the curve. The
ground truth is the run's exported `eval/gt_*.json` unless `--gt` is given. One curve per run,
labelled with its MR^-2 like the Caltech / CityPersons plots (legend sorted best first); the 9
reference FPPI points of MR^-2 are marked on the x axis.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from evaluation import miss_rate
from evaluation.io import load_detections, load_ground_truth

Y_TICKS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.64, 0.8, 1.0)


def plot_mr_fppi(curves: Mapping[str, tuple], path: str, title: str = "") -> None:
    """`curves`: {label: (fppi [N], miss_rate [N], MR^-2)}; writes a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    ranked = sorted(curves.items(), key=lambda kv: (kv[1][2] < 0, kv[1][2]))
    for label, (fppi, mr, score) in ranked:
        fppi, mr = np.asarray(fppi, np.float64), np.asarray(mr, np.float64)
        name = f"{100 * score:.2f}% {label}" if score >= 0 else f"n/a {label}"
        if fppi.size == 0:
            ax.plot([], [], label=name)
            continue
        # A step curve from the first detection on; the miss rate before any detection is 1.
        x = np.concatenate([[1e-4], fppi])
        y = np.concatenate([[1.0], mr])
        ax.step(x, np.maximum(y, 1e-4), where="post", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 1e1)
    ax.set_ylim(0.05 if all(v[2] < 0 or v[2] > 0.05 for v in curves.values()) else 0.01, 1.0)
    ax.set_yticks(Y_TICKS, [f"{t:g}" for t in Y_TICKS])
    ax.minorticks_off()
    for x in miss_rate.FPPI_POINTS:
        ax.axvline(x, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("miss rate")
    ax.grid(alpha=0.3, which="major")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def curves_for(gt: dict, dets: list[dict], setups: Sequence[str]) -> dict[str, tuple]:
    """{setup: (fppi, miss_rate, MR^-2)} for one set of detections."""
    matches = miss_rate.setup_matches(gt, dets, list(setups))
    out = {}
    for name, m in matches.items():
        tp = np.cumsum(m.is_tp)
        fp = np.cumsum(~m.is_tp)
        num_pos = int(np.count_nonzero(~m.gt_ignored))
        mr = 1.0 - tp / num_pos if num_pos else np.ones(tp.size)
        out[name] = (fp / m.num_images, mr, m.mr)
    return out


def resolve_run(path: str, step: int | None = None) -> tuple[str, str]:
    """(eval dir with detections.json, ground-truth JSON) of a workdir or eval dir."""
    if os.path.isfile(os.path.join(path, "detections.json")):
        eval_dir = path
    else:
        steps = sorted(int(d) for d in os.listdir(os.path.join(path, "eval"))
                       if d.isdigit()) if os.path.isdir(os.path.join(path, "eval")) else []
        if not steps:
            raise FileNotFoundError(f"{path}: no eval/<step>/detections.json; evaluate it first "
                                    "(python main.py ... --mode=eval)")
        if step is not None and step not in steps:
            raise FileNotFoundError(f"{path}: no eval/{step}; available steps {steps}")
        eval_dir = os.path.join(path, "eval", str(step if step is not None else steps[-1]))
    gts = sorted(glob.glob(os.path.join(os.path.dirname(os.path.normpath(eval_dir)), "gt_*.json")))
    if not gts:
        raise FileNotFoundError(f"{eval_dir}: no ../gt_*.json next to it; pass --gt")
    return eval_dir, gts[0]


def _default_label(path: str) -> str:
    """The path's last component, or its last two when the last one says little (seed3, 900)."""
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) > 1 and re.fullmatch(r"seed\d+|\d+|eval", parts[-1]):
        return "/".join(parts[-2:])
    return parts[-1]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.plot_curves",
        description="Miss rate vs FPPI curves (log axes) of several runs on one plot.",
    )
    p.add_argument("runs", nargs="+", help="workdirs or eval dirs, optionally LABEL=PATH")
    p.add_argument("--setup", default="Reasonable", help="CityPersons setup (default Reasonable)")
    p.add_argument("--step", type=int, help="eval step of every workdir (default: latest)")
    p.add_argument("--gt", help="ground-truth JSON for every run (default: the run's own)")
    p.add_argument("--out", default="mr_fppi.png", help="PNG to write (default mr_fppi.png)")
    args = p.parse_args(argv)
    curves = {}
    try:
        for spec in args.runs:
            label, _, path = spec.rpartition("=")
            label = label or _default_label(path)
            eval_dir, gt_path = resolve_run(path, args.step)
            gt = load_ground_truth(args.gt or gt_path)
            dets = load_detections(os.path.join(eval_dir, "detections.json"))
            curves[label] = curves_for(gt, dets, [args.setup])[args.setup]
        plot_mr_fppi(curves, args.out, title=f"{args.setup}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, (_, _, mr) in curves.items():
        print(f"{label}: MR^-2 {args.setup} = {100 * mr:.2f}%")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
