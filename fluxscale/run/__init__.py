"""Orchestration: the command line (``cli``), the pipeline runner (``pipeline``), the end
summary (``summary``) and the one-against-many experiment (``one_against_many``). Import
from the modules."""
