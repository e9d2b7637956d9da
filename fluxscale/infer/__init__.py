"""Stage: global inference of every member over every land pixel and day, mapped
blockwise into chunked NEE cubes. ``stage`` (:func:`infer`, the entry), ``plan`` (the layout
and the blocks, no I/O), ``members`` (the members a config selects), ``block`` (the task run
on each block), ``kernels`` (its numba statistics), ``cube`` (template, key, records,
commit), ``shards`` (the shard writer) and ``shard_kernels`` (its numba gridding). Import
from the modules."""
