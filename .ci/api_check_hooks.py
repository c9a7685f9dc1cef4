"""Schemathesis hooks of `.ci/api-check` (loaded through SCHEMATHESIS_HOOKS).

Registers the codec `bmp`: UTF-8 for the characters of the Basic
Multilingual Plane, refusing the others. `generation.codec = "bmp"` then
keeps generated strings in the plane where the document's name pattern
states the whole name rule (docs/api.md, "Names"): beyond it a pattern cannot
say portably which characters are unassigned or private-use, so there the
document is looser than the service, as its description says.
"""

import codecs


def _encode(text, errors="strict"):
    for index, char in enumerate(text):
        if ord(char) > 0xFFFF:
            raise UnicodeEncodeError("bmp", text, index, index + 1, "beyond the BMP")
    return text.encode("utf-8", errors), len(text)


def _decode(data, errors="strict"):
    return codecs.utf_8_decode(data, errors, True)


def _search(name):
    if name != "bmp":
        return None
    return codecs.CodecInfo(_encode, _decode, name="bmp")


codecs.register(_search)
