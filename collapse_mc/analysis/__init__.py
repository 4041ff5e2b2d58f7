"""Analysis: stored counts -> estimates, safe/unsafe/undetermined cells, boundaries, theory lines."""
from .safe_region import (DEFAULT_THRESHOLDS, Boundary, Grid, boundary, classify, depth_profile, grid_from_cells,
                          grid_from_profiles, undetermined_widths)

__all__ = ["DEFAULT_THRESHOLDS", "Boundary", "Grid", "boundary", "classify", "depth_profile", "grid_from_cells",
           "grid_from_profiles", "undetermined_widths"]
