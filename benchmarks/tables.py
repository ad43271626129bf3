"""What the benchmark scripts share: a table cell of a quantity measured over seeds."""

from __future__ import annotations

import statistics


def cell(values, scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` of the values given (None left out; "-" when none), times ``scale``."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"
