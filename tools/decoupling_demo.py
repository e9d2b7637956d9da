"""The bridge-decoupling failure mode on the tiny twin: EC vs EC-ATM of fold 0, 15 epochs.

``python tools/decoupling_demo.py`` (about a minute): prints the decoupling monitor and the ATM
loss on all months at epochs 0, 1, 5, 10, 15 for both variants.
"""
import shutil
from fluxscale.config import TrainConfig, BridgeConfig
from fluxscale.twin import make_twin
from fluxscale.bridges.integrals import compute_integrals
from fluxscale.bridges.build import build_bridges
from fluxscale.learn.data import load_training_data
from fluxscale.learn.fit import train_member
root = "/tmp/fluxscale-decoupling-demo"
shutil.rmtree(root, ignore_errors=True)
make_twin(root, preset="tiny", show_progress=False)
compute_integrals(root)
build_bridges(root, BridgeConfig(repeats=10, repeats_per_task=10), show_progress=False)
cfg = TrainConfig(epochs=15, steps_per_epoch=20, threads=1)
data = load_training_data(root, cfg)
for v in ("ec", "ecatm"):
    log = train_member(root, cfg, v, 0, data=data, write=False)["log"]
    print(v, "decoupling", [round(log[e]["decoupling"], 3) for e in (0, 1, 5, 10, 15)],
          "atm_all", [round(log[e]["atm_all"], 4) for e in (0, 1, 5, 10, 15)])
