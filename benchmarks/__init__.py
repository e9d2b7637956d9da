"""fluxscale benchmarks: ``python -m benchmarks --size {tiny,small,full}``."""
