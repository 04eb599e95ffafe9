"""Text of an uploaded or given CSV file, whichever encoding a Chinese office saved it in."""

from __future__ import annotations

from xihu.core.errors import Invalid

__all__ = ["ENCODINGS", "decode_csv"]

# Excel on Chinese Windows saves "CSV" as GBK; GB18030 is its superset, so it also reads GBK files
ENCODINGS = ("utf-8-sig", "gb18030")


def decode_csv(data: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), else GBK/GB18030; a clear error otherwise."""
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Invalid("无法识别文件编码，请使用 UTF-8 或 GBK 编码的 CSV", english="unknown file encoding")
