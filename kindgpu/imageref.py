"""Image references checked as Docker and containerd check them: the grammar of
github.com/distribution/reference (regexp.go, reference.go Parse) and go-digest's lengths, so a name no
registry or Docker could accept is refused before anything runs. tests/testdata/imageref holds that
module's own test cases, which the tests run against this.

No Python package implements that grammar as a plain check without a registry client, so it is here, in
the module's own terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALPHANUMERIC = r"[a-z0-9]+"
SEPARATOR = r"(?:[._]|__|[-]+)"
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
DOMAIN_AND_PORT = rf"(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|{IPV6})(?::[0-9]+)?"
PATH_COMPONENT = rf"{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*"
REMOTE_NAME = rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
NAME = rf"(?:{DOMAIN_AND_PORT}/)?{REMOTE_NAME}"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

REFERENCE_RE = re.compile(rf"({NAME})(?::({TAG}))?(?:@({DIGEST}))?", re.ASCII)
NAME_RE = re.compile(rf"(?:({DOMAIN_AND_PORT})/)?({REMOTE_NAME})", re.ASCII)
TAG_RE = re.compile(TAG, re.ASCII)
NAME_MAX = 255
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest's algorithms


@dataclass(frozen=True)
class Reference:
    repository: str
    domain: str
    tag: str
    digest: str


class InvalidReference(ValueError):
    """Not an image reference Docker or containerd would accept."""


def parse(text: str) -> Reference:
    """A reference, or InvalidReference saying why (as distribution/reference's Parse does)."""
    found = REFERENCE_RE.fullmatch(text)
    if found is None:
        if text == "":
            raise InvalidReference("repository name must have at least one component")
        if REFERENCE_RE.fullmatch(text.lower()):
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = found.group(1), found.group(2) or "", found.group(3) or ""
    parts = NAME_RE.fullmatch(name)
    domain, path = (parts.group(1) or "", parts.group(2)) if parts else ("", name)
    if len(path) > NAME_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_MAX} characters")
    if digest:
        algorithm, _, hex_part = digest.partition(":")
        want = DIGEST_HEX_LENGTHS.get(algorithm)
        if want is None:
            raise InvalidReference(f"unsupported digest algorithm {algorithm}")
        if len(hex_part) != want:
            raise InvalidReference(f"invalid checksum digest length for {algorithm}")
        if hex_part != hex_part.lower():
            raise InvalidReference("invalid checksum digest format")
    return Reference(name, domain, tag, digest)


def problem(text) -> str | None:
    """Why text is not an image reference, or None."""
    if not isinstance(text, str):
        return "is not a string"
    try:
        parse(text)
    except InvalidReference as err:
        return str(err)
    return None


def tag_problem(text) -> str | None:
    """Why text is not an image tag (letters, digits, _ . -, at most 128, not starting with . or -), or None."""
    if isinstance(text, str) and TAG_RE.fullmatch(text):
        return None
    return "is not an image tag (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)"
