"""One run split into parts that run apart (on a Dask cluster) and merge into the single run's
results: :mod:`.plan` (where to cut), :mod:`.part` (one part's pipeline), :mod:`.merge` (joining
the parts) and :mod:`.cluster` (the Dask client and the run). docs/distributed.md explains it."""
