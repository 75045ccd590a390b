"""Text: documents from their sources, sentences, passages with exact offsets, and the terms BM25 sees."""
