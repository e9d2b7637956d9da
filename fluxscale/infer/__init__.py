"""Stage: global inference of every member over every land pixel and day, mapped
blockwise into chunked NEE cubes (``inference``), and the shard writer (``shards``). Import
from the modules."""
