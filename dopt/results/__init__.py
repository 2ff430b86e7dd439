"""What a search leaves behind: pareto.json / pareto.csv and the Pareto picture (docs/outputs.md#working-directory-layout).

The picture lives in :mod:`dopt.results.plot`, imported on its own so that matplotlib loads
only when a figure is drawn.
"""

from __future__ import annotations

from dopt.results.pareto import front_entries, write_csv, write_json

__all__ = ["front_entries", "write_csv", "write_json"]
