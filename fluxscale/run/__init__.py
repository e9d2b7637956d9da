"""Orchestration: the command line (``cli``, its flags parsed into the config tree in
``flags``), the stage graph as data (``stages``), the pipeline runner (``pipeline``) and its
data stage (``data_stage``), the end summary (``summary``) and the one-against-many
experiment (``one_against_many``). Import from the modules."""
