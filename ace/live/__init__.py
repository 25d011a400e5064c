"""Live streams, the parts that need no Ray: ingest of a stream URL into a rolling buffer of short
segments (:mod:`ace.live.ingest`) and causal per-stream analysis that emits moments and clips as
soon as their end is certain (:mod:`ace.live.analyzer`). The Ray actors in ``workers/`` hold one of
each per stream."""
