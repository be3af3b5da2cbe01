"""How the raw stage gets its files: downloads into a content-addressed cache (download) and safe extraction of
archives (archive)."""
