"""The index: the record file (system of record), the BM25 index and the live view derived from it."""
