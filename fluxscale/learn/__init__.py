"""Stage: training the EC and EC-ATM ensembles. The MLP and its members (``model``, the
module inference shares), the losses (``losses``, Eq. 4-14), stacked groups (``stacked``),
the atmospheric sample (``atm_sample``) and the training stage: its inputs from the stores
(``data``), one member's state and losses (``member``), a group's stacked state and step
(``group``), the epoch loop with best epoch and checkpoints (``fit``) and the ensemble's
scheduling, resume and entry point (``ensemble``, ``train_ensemble``). Import from the
modules: this package re-exports nothing, so that inference, which imports ``learn.model``,
loads no training code."""
