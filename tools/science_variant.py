"""One reduced twin world through the whole pipeline with chosen training settings, for
comparing the atmospheric term's settings on the same world (docs/evaluation.md, "Global
consistency").

``python tools/science_variant.py OUT [KNOB=VALUE ...] [train.NAME=VALUE ...]``

The world is the tiny preset (2°) with 120 towers and 2001–2006 (as tests/test_science.py),
5 folds per ensemble, 50 bridge repeats; twin knobs (``seed=7``) and training settings
(``train.atm_term=bridges``) as given. Then ``python -c`` on
``benchmarks.science.world_result(OUT)`` or ``fluxscale evaluate OUT`` reads the numbers.
The paper's formulation is ``train.atm_term=bridges train.kendall_init=zero
train.lr_schedule=constant train.selection=relative_sum train.atm_annual_weight=0
train.ema_decay=0 train.tower_bias=none``.
"""

from __future__ import annotations

import json
import sys
import time

from fluxscale.config import BridgeConfig, ClusterConfig, EvalConfig, RunConfig, TrainConfig, twin_preset
from fluxscale.run.pipeline import run_pipeline


def main(argv: list[str]) -> None:
    out, knobs, train = argv[0], {"n_sites": 120, "end_year": 2006}, {}
    for a in argv[1:]:
        k, v = a.split("=", 1)
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
        (train if k.startswith("train.") else knobs)[k.removeprefix("train.")] = v
    cfg = RunConfig(data_dir=out, twin=twin_preset("tiny", **knobs), cluster=ClusterConfig(n_workers=2),
                    bridge=BridgeConfig(repeats=50),
                    train=TrainConfig(folds=(0, 1, 2, 3, 4)).replace(**train),
                    evaluate=EvalConfig(maps=False))
    t = time.time()
    run_pipeline(cfg, show_progress=False)
    print(f"{out}: {time.time() - t:.0f} s")


if __name__ == "__main__":  # LocalCluster worker processes re-import this module
    main(sys.argv[1:])
