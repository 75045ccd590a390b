"""Text out of files: PDF, HTML, DOCX, Markdown and plain text, each with its pages and sections.

`extract(data, name)` sniffs the type from the content (the name's extension only tells Markdown from plain
text) and returns an `Extracted`: the text every citation's offsets refer to, with where each page and
section starts. A file that cannot be read raises `ExtractionError` with a reason a person can act on.
"""
