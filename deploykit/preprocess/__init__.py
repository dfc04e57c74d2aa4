"""Image preprocessing. Work in progress (issue 4): ``reference`` holds the pure-NumPy twins of
the resampling rules the C core will implement — the oracle its tests compare against. The
public API (``letterbox``, ``resize_crop``, ``batch``) arrives with the C core."""
