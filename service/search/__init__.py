"""The retrieval pipeline: BM25 and dense candidates, fusion, the answering sentence, cues, filters."""
