"""Stage: regional integrals (``integrals``, Eq. 2), DTW distance matrices (``dtw``),
spectral clusters (``clustering``), Lasso bridge models (``lasso``, Eq. 1, 3) and the stage
that builds them (``build``). Import from the modules."""
