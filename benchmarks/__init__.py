"""Side-by-side benchmarks against the peers; see ``python -m benchmarks --help``."""

# The families of the suite, in the order it runs them (one module ``benchmarks.<family>`` each).
FAMILIES = (
    "soft_dtw",
    "sinkhorn",
    "assignment",
    "gaussian",
    "ot_toolbox",
    "series_toolbox",
    "coordination",
)
