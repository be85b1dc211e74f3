"""What the offline tools share and the kiosk never runs: the trainer, exporter, fleet and benchmarks.

`edge` is what runs in the clinic; `lab` sits above it (it imports `edge`, never the reverse) and
below `trainer`, `quantize` and `fleet`. Nothing here imports TensorFlow except `lab.tf_env`, which
only the TensorFlow modules of those tools import.
"""
