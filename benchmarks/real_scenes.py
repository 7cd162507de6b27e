#!/usr/bin/env python3
"""Real-scene CPU runs of the rows that need no diffusion or depth weights: one sweep file, one command.

The grid (LLFF fern at 2,000 steps and DTU scan24 at 1,000 steps, `base` and `base + L_geo`, seeds 0/1/2,
3 training views) is `benchmarks/sweeps/real_scenes.toml`; `ipsm-sweep` runs it as Ray tasks, skips runs
that already finished, resumes killed ones, and writes the tables next to the paper's averages:

    ipsm-sweep benchmarks/sweeps/real_scenes.toml                 # = python benchmarks/real_scenes.py
    ipsm-sweep benchmarks/sweeps/real_scenes.toml --seeds 0       # one seed
    ipsm-sweep benchmarks/sweeps/real_scenes.toml --table-only    # re-print the tables of the finished runs

Runs land in results/real_scenes/<scene>/<row>/seed<k>/ (ordinary ipsm-train run folders); tables.md,
summary.csv, summary.json, runs.csv, bars.png and curves.png in results/real_scenes/.
"""

import sys
from pathlib import Path

from ipsm.sweep import sweep_main

if __name__ == "__main__":
    sys.exit(sweep_main([str(Path(__file__).resolve().parent / "sweeps" / "real_scenes.toml"), *sys.argv[1:]]))
