"""A/B harness: replay a trace against several scheduling arms (simulated or on a GPU server),
search each arm's capacity, and hand the run directories to `fairbatching_sglang.report`."""
