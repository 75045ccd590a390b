"""Offline evaluation: BEIR folders and QA files, judged per document or passage, and the measures."""
