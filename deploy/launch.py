#!/usr/bin/env python3
"""The fluxscale scheduler script: build or connect a Dask cluster and run a stage on it.

    python deploy/launch.py [CLUSTER OPTIONS] STAGE [STAGE ARGUMENTS]

is ``fluxscale cluster [CLUSTER OPTIONS] STAGE [STAGE ARGUMENTS]`` (see deploy/README.md
and ``python deploy/launch.py --help``). Examples::

    python deploy/launch.py --workers 2 run                              # LocalCluster
    python deploy/launch.py --scheduler tcp://10.0.0.5:8786 infer DIR    # existing cluster
    python deploy/launch.py --scheduler-file ~/sched.json train DIR
    python deploy/launch.py --kind slurm --jobqueue-config deploy/slurm/jobqueue.yaml \\
        --workers 4 run --out /scratch/fluxscale                         # SLURM jobs
    python deploy/launch.py --kind kubernetes --image REGISTRY/fluxscale:0.1 --workers 4 run
    python deploy/launch.py --kind ssh --ssh-host head --ssh-host node1 --ssh-host node2 run
"""

import sys

from fluxscale.run.cli import app

if __name__ == "__main__":
    sys.exit(app(["cluster", *sys.argv[1:]], prog_name="deploy/launch.py"))
