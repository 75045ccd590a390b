"""Documents that try to inject markup into the pages, and one with CRLF line ends, for escaping tests."""

from __future__ import annotations

from pathlib import Path

# The doc id itself carries markup and URL syntax (`?`, `#`, `&`): links must quote it, pages must escape it.
HOSTILE_ID = 'zebra<b>&"?#1'
HOSTILE_TEXT = (
    "Zebra census <script>alert(3)</script>\n\n"
    "The zebra migration count rose sharply this spring. Rangers logged <script>alert(1)</script> in the "
    "field notes, and an image tag <img src=x onerror=alert(2)> turned up in the same report.\n\n"
    "Nothing else in this note is about the zebra migration.\n"
)
HOSTILE_QUESTION = "zebra migration count"
CRLF_ID = "windows_note"
CRLF_TEXT = "Ferry timetable\r\n\r\nThe harbour ferry leaves at nine.\r\nIt returns at five.\r\n"


def write_hostile_documents(folder: Path) -> Path:
    """Writes the documents as `.txt` files (CRLF kept byte for byte) and returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{HOSTILE_ID}.txt").write_text(HOSTILE_TEXT, encoding="utf-8")
    with (folder / f"{CRLF_ID}.txt").open("w", encoding="utf-8", newline="") as handle:
        handle.write(CRLF_TEXT)
    return folder
