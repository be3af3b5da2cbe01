"""How the ingest stage reads each source format: JSON-lines shaping (jsonl), numbered lines (lines), and readers
for THUCNews, plain text, Parquet and OpenWebText (readers)."""
