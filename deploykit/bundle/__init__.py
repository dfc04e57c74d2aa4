"""Model bundles (issue 16): one deployable unit — a model's artifacts, its preprocessing, labels and
metadata, every file with its sha256 in ``deploykit.json`` — as a folder or one archive, verified
before anything in it is parsed, optionally signed (docs/bundles.md, docs/security.md).
``dk.pack`` makes one, ``dk.load`` opens one, ``dk.sign`` signs one."""
