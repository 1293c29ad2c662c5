"""doit tasks an application's dodo.py chains before the build (docs/build.md, "doit build in an
application repository"): ``compile -> copy_bom -> occlum build``.

    from occlum_build.pipeline.apptasks import copy_bom_task
    from occlum_build.pipeline.run import dodo

    def task_compile(): ...                       # the app's own task, writes build-out/app
    def task_copy_bom():
        return copy_bom_task("app.yaml", "occlum_instance/image", task_dep=["compile"])
    globals().update(dodo("occlum_instance", sgx_mode="SIM", after=["copy_bom"]))

The copy_bom task has the bom file and every bom it includes as ``file_dep`` and the root
as its target; it is up to date when copying would change nothing in the root: copy_bom's
own run stamp (bom/stamp.py) answers that, else a dry run.  Both cover the files the bom
copies, so a recompiled program makes the task run again.  ``dodo(..., after=[...])``
makes the image stage wait for those tasks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from ..errors import OcclumError


def _nothing_to_copy(bom: Path, root: Path, include_dirs: list[str]) -> bool:
    """Up to date when copy_bom would change nothing in ``root``: its run stamp (bom/stamp.py)
    answers at the cost of a stat per path; without a valid stamp (a source changed within
    the racy window of the last run, the cache off) a dry run decides."""
    from .. import paths
    from ..bom import copy_bom, stamp

    spath = stamp.stamp_path(str(root), str(bom), include_dirs, str(paths.elf_loader_config()))
    if spath is not None and stamp.load(spath, os.environ) is not None:
        return True
    try:
        return not copy_bom(bom, root, include_dirs=include_dirs, dry_run=True).changed
    except OcclumError:
        return False  # the task runs and reports it


def copy_bom_task(bom: str | os.PathLike[str], root: str | os.PathLike[str], *,
                  include_dirs: Sequence[str | os.PathLike[str]] = (), name: str = "copy_bom",
                  task_dep: Sequence[str] = ()) -> dict[str, Any]:
    """A doit task dict that runs copy_bom ``bom`` into ``root`` (paths relative to the
    dodo.py directory).  A bad bom fails the task with copy_bom's one-line error."""
    from ..bom import copy_bom
    from ..bom.includes import collect_boms

    bom_p, root_p = Path(os.path.abspath(bom)), Path(os.path.abspath(root))
    dirs = [os.path.abspath(d) for d in include_dirs]
    try:
        boms = [str(b.path) for b in collect_boms(bom_p, dirs)]
    except OcclumError:
        boms = [str(bom_p)]  # the task reports the error when it runs

    def action() -> TaskFailed | None:
        try:
            rep = copy_bom(bom_p, root_p, include_dirs=dirs)
        except OcclumError as e:
            return TaskFailed(f"copy_bom {bom_p}: {e}")
        print(rep.summary())
        return None

    return {"basename": name, "doc": f"copy_bom -f {bom} --root {root}",
            "actions": [action], "file_dep": boms, "targets": [str(root_p)],
            "uptodate": [lambda: _nothing_to_copy(bom_p, root_p, dirs)],
            "task_dep": list(task_dep), "verbosity": 2}


__all__ = ["copy_bom_task"]
