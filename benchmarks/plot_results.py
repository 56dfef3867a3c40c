"""Bar chart of the paper's Table I (Dice on its own split) beside the rows trained here (docs/results.md).

    python benchmarks/plot_results.py   # needs matplotlib; writes docs/img/results_dice.png
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
PAPER = {"VM-UNet-ASPP": 91.95, "VM-UNet": 91.90, "VM-UNet-V2 + EAA": 91.73, "UCTransNet": 91.05, "U-Net": 90.9,
         "SA2-Net": 90.9, "SAM-LoRA": 90.9, "VM-UNet-V2": 90.5, "R2AttU-Net": 90.2, "U-Net++": 90.0, "SAM": 88.4,
         "SegNet": 83.9}
RESULTS = HERE / "results"


def mean_dice(name: str) -> float:
    """Mean per-image Dice (%) of a `grainseg evaluate` JSON in benchmarks/results."""
    return 100 * json.loads((RESULTS / name).read_text())["mean"]["dice"]


def tile_dice(name: str) -> float:
    """Mean per-tile test Dice (%) of a `tta_lever.py` JSON in benchmarks/results."""
    return 100 * json.loads((RESULTS / name).read_text())["results"]["test/none"]["tiles"]["dice"]


# (label, Dice %, colour) of the runs in benchmarks/results (seed 0 unless labelled); the small models' numbers are
# from their training records (train_vmunet_aspp_small_*.json, evaluated before `evaluate` wrote JSON)
OURS = [("ours: vmunet_aspp_small, paper split, paper test (0.1)", 90.20, "#e39b5b"),
        ("ours: vmunet_aspp_small, grouped split, grouped test (0.2)", 90.92, "#c0392b"),
        ("ours: the same, seed 1", tile_dice("ablation_aspp_small_seed1.json"),
         "#e74c3c"),
        ("ours: vmunet_aspp, paper protocol, 20 epochs, paper test", mean_dice("eval_vmunet_aspp_paper_paper_test.json"),
         "#8e44ad"),
        ("ours: vmunet_aspp, grouped split, grouped test", mean_dice("eval_vmunet_aspp_grouped_grouped_test.json"),
         "#6c3483"),
        ("ours: vmunet (no ASPP), paper protocol, 20 epochs, paper test",
         mean_dice("eval_vmunet_paper_paper_test.json"), "#a569bd"),
        ("ours: vmunet small (no ASPP), grouped split, grouped test", tile_dice("ablation_noaspp_small.json"),
         "#d35400"),
        ("ours: the same, seed 1", tile_dice("ablation_noaspp_small_seed1.json"),
         "#e67e22"),
        ("ours: unet_small (U-Net, 3.0 M), grouped split, grouped test", tile_dice("unet_small_grouped_test.json"),
         "#1e8449"),
        ("ours: the same, seed 1", tile_dice("unet_small_grouped_seed1_test.json"), "#27ae60"),
        ("all grain (paper test)", 88.2, "#999999"), ("all grain (grouped test)", 88.4, "#bbbbbb")]


def main() -> None:
    labels = [f"paper: {k}" for k in PAPER] + [o[0] for o in OURS]
    vals = list(PAPER.values()) + [o[1] for o in OURS]
    cols = ["#5b8db8"] * len(PAPER) + [o[2] for o in OURS]
    fig, ax = plt.subplots(figsize=(7.5, 5.6), dpi=110)
    y = range(len(labels))[::-1]
    ax.barh(list(y), vals, color=cols)
    for yi, v in zip(y, vals):
        ax.text(v + 0.05, yi, f"{v:.2f}", va="center", fontsize=7)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlim(83, 93)
    ax.set_xlabel("per-image test Dice (%)")
    ax.set_title("Paper's Table I (its tile-level split) and the models trained here", fontsize=9)
    fig.tight_layout()
    out = HERE.parent / "docs" / "img" / "results_dice.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
