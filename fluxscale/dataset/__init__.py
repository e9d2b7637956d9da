"""The dataset: the store schema and its checks (``schema``, ``stores``), the grid and
regions (``grid``, ``regions``), units (``units``), daily driver blocks (``drivers``) and their
numba kernels (``driver_kernels``). Import from the modules; this package re-exports nothing,
so that ``import fluxscale.dataset.stores`` does not load numba."""
