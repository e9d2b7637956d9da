"""The synthetic twin Earth: every store of a fluxscale dataset from a known true NEE.

``make_twin(out, preset="tiny"|"small"|"full", seed=..., **knobs)``; the knobs are the
fields of :class:`fluxscale.config.TwinConfig`. Kernels: :mod:`.climate` (drivers),
:mod:`.fluxes` (truth), :mod:`.sites` (towers), :mod:`.atmosphere` (inversions, fire,
prior, GCB), :mod:`.vegetation` (the PFT map in the grid, the towers' IGBP classes);
orchestration: :mod:`.make`.
"""

from fluxscale.twin.make import calibrate_sink, cell_block_plan, make_twin, month_block_plan, write_twin

__all__ = ["make_twin", "write_twin", "cell_block_plan", "month_block_plan", "calibrate_sink"]
