"""Masking of personal data for public and unprivileged views."""

from __future__ import annotations

import re

_PHONE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")


def mask_name(name: str | None) -> str | None:
    """张三丰 -> 张**; keeps only the family name."""
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str | None) -> str | None:
    """13812345678 -> 138****5678; landlines keep the last 4 digits."""
    if not phone:
        return phone
    digits = phone.replace("-", "")
    if len(digits) >= 11 and digits[-11] == "1":
        return digits[-11:-8] + "****" + digits[-4:]
    return "*" * max(0, len(digits) - 4) + digits[-4:]


def mask_text(text: str) -> str:
    """Hide mobile numbers and ID-card numbers written into free text."""
    text = _ID_IN_TEXT.sub(lambda m: m.group(1) + "********" + m.group(2), text)
    return _PHONE_IN_TEXT.sub(lambda m: m.group(1) + "****" + m.group(2), text)
