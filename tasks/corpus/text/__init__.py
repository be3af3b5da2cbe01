"""What the filter, dedupe and tokenize stages know about text: the quality rules (rules) and the compiled kernels
that measure documents, key exact duplicates and count characters (stats)."""
