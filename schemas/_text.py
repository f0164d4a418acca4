"""Size-bounded text from untrusted bytes and strings, for dead letters and error messages."""

from __future__ import annotations

import codecs

ELLIPSIS = "…"
MIN_RAW_BOUND = 64


def _decoded_prefix(raw: bytes, length: int) -> tuple[str, int]:
    """The text of the first `length` bytes (ending on a whole character) and bytes it covers."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(raw[:length], final=False)
    pending, _flag = decoder.getstate()
    return text, length - len(pending)


def _utf8_size(text: str) -> int:
    """Number of bytes in the UTF-8 encoding of `text`."""
    return len(text.encode("utf-8"))


def bounded_utf8(raw: bytes, max_bytes: int) -> str:
    """Decode `raw` as UTF-8 (bad bytes replaced) into text of at most `max_bytes` UTF-8 bytes.

    When the value does not fit, the kept prefix ends with "…[truncated N bytes]", N being how
    many bytes of `raw` were left out; the suffix counts towards `max_bytes`.
    """
    if max_bytes < MIN_RAW_BOUND:
        raise ValueError(f"max_bytes must be at least {MIN_RAW_BOUND}, got {max_bytes}")
    if len(raw) <= max_bytes:
        whole = raw.decode("utf-8", errors="replace")
        if _utf8_size(whole) <= max_bytes:
            return whole
    # Reserve room for the longest suffix this value can need.
    budget = max_bytes - _utf8_size(f"{ELLIPSIS}[truncated {len(raw)} bytes]")
    text, covered = _decoded_prefix(raw, budget)
    if _utf8_size(text) > budget:
        # Replacement characters made the text bigger than the bytes: find the longest prefix
        # that fits (the decoded size only grows with the prefix length).
        low, high = 0, budget
        while low < high:
            middle = (low + high + 1) // 2
            if _utf8_size(_decoded_prefix(raw, middle)[0]) <= budget:
                low = middle
            else:
                high = middle - 1
        text, covered = _decoded_prefix(raw, low)
    return f"{text}{ELLIPSIS}[truncated {len(raw) - covered} bytes]"


def bounded_text(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters, ending with "…" when cut."""
    if len(text) <= max_chars:
        return text
    return text[: max_chars - len(ELLIPSIS)] + ELLIPSIS
