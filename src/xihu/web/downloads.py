"""File downloads from pages: the right media type and a Chinese file name every browser keeps."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import Response

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def xlsx_download(content: bytes, filename: str) -> Response:
    """An Excel workbook as an attachment named `filename` (UTF-8, RFC 5987)."""
    return Response(
        content,
        media_type=XLSX,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )
