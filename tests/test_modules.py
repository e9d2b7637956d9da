"""Module shape (issue 21): the training and inference stages share the model module and
neither imports the other."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("stage, other", [("inference", "training"), ("training", "inference")])
def test_stages_do_not_import_each_other(stage, other):
    code = (f"import sys, fluxscale.{stage}; "
            f"print('fluxscale.{other}' in sys.modules, 'fluxscale.model' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"], out


def test_stage_names_are_the_model_modules():
    """The names the stages re-export are the shared module's objects, not copies."""
    from fluxscale import inference, model, training

    assert training.load_member is model.load_member and training.models_dir is model.models_dir
    assert inference.forward_members is model.forward_members and inference.member_weights is model.member_weights
