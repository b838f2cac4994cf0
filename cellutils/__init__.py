"""cellutils: the helper package behind the cellpaint-course notebooks.

One module per step of the pipeline (see README and DESIGN):

- ``runtime``   device choice (cuda, mps, cpu) and seeding
- ``paths``     data root and per-run results folders that never overwrite
- ``notebooks`` papermill runner with the ``smoke`` / ``quick`` / ``full`` run settings
"""

from cellutils.paths import data_root, new_run_dir, repo_root
from cellutils.runtime import pick_device, seed_everything

__all__ = ["data_root", "new_run_dir", "pick_device", "repo_root", "seed_everything"]
__version__ = "0.1.0"
