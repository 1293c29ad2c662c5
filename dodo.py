"""doit tasks for this repository (`doit list`).

    doit native     build the native runtime (make -C libos)
    doit build      `occlum build` of the instance in $OCCLUM_INSTANCE, when that is set
                    (SGX mode from $SGX_MODE, default HW, as `occlum build`)

An application repository needs only the three lines of docs/build.md ("doit build").
"""

import os

DOIT_CONFIG = {"default_tasks": ["native"], "verbosity": 2, "dep_file": ".doit.sqlite", "backend": "sqlite3"}


def task_native():
    """make -C libos: occlum-run, the PAL and LibOS libraries, occlum-fs."""
    return {"actions": ["make -C libos"], "uptodate": [False]}


if os.environ.get("OCCLUM_INSTANCE"):
    from occlum_build.pipeline.run import dodo

    _ns = dodo(os.environ["OCCLUM_INSTANCE"])
    _ns["DOIT_CONFIG"]["default_tasks"] = ["build"]
    DOIT_CONFIG = _ns["DOIT_CONFIG"]
    task_occlum = _ns["task_occlum"]
