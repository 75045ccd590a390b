"""`make bench`: quality, latency, indexing, write cost and a peer (txtai), measured in one run."""
