"""The doit task graph behind `occlum build` (graph.py), its checker, state, report and runner.

The one place that wires the stage modules (config, image, sgx) together.
"""
