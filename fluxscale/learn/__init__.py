"""Stage: training the EC and EC-ATM ensembles. The MLP and its members (``model``, the
module inference shares), the losses (``losses``, Eq. 4-14), stacked groups (``stacked``),
the atmospheric sample (``atm_sample``) and the training stage. Import from the modules:
this package re-exports nothing, so that inference, which imports ``learn.model``, loads no
training code."""
