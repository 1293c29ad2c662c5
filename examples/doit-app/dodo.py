"""An application repository that builds its Occlum instance with doit (docs/build.md):

    occlum new occlum_instance     # once
    doit                           # compile -> copy_bom -> occlum build, each only if needed
    cd occlum_instance && occlum run /bin/hello

A second `doit` does nothing; editing hello.c recompiles, recopies and rebuilds the image.
"""

from occlum_build.pipeline.apptasks import copy_bom_task
from occlum_build.pipeline.run import dodo


def task_compile():
    """hello.c -> build-out/hello (gcc, glibc: copy_bom adds its libraries)."""
    return {"actions": ["mkdir -p build-out && gcc -O2 -o build-out/hello hello.c"],
            "file_dep": ["hello.c"], "targets": ["build-out/hello"], "verbosity": 2}


def task_copy_bom():
    return copy_bom_task("app.yaml", "occlum_instance/image", task_dep=["compile"])


# The build stages (and DOIT_CONFIG: `doit` alone runs "build"); the image waits for copy_bom.
globals().update(dodo("occlum_instance", sgx_mode="SIM", after=["copy_bom"]))
