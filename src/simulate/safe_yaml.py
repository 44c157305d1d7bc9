"""Reading the lab's YAML files (scenarios, grids) safely, with one clear message per fault.

Every YAML file the lab reads goes through :func:`read_yaml`, which refuses, naming the
file and the problem:

- a path that is missing, a folder, unreadable, or larger than :data:`MAX_BYTES`;
- text that is not UTF-8 (Latin-1 "Bergström", UTF-16 with or without a byte-order mark,
  a binary file), with the line and column of the first bad byte;
- YAML that is invalid, uses anchors or aliases (``&a`` / ``*a``: a 1 kB "billion laughs"
  file expands to gigabytes), nests deeper than :data:`MAX_DEPTH`, or repeats a key in
  one mapping (YAML itself would silently keep the last one);
- a file that is empty or holds only comments (which would otherwise read as "all
  defaults").

Examples
--------
>>> import tempfile, os
>>> from simulate.errors import ProblemsError
>>> with tempfile.TemporaryDirectory() as d:
...     p = os.path.join(d, "s.yaml")
...     _ = open(p, "w").write("size: {units: 3}\\nsize: {units: 4}\\n")
...     try:
...         read_yaml(p, "scenario")
...     except ProblemsError as exc:
...         print(exc.problems[0])
size: duplicate key (line 2; first at line 1)
"""

from __future__ import annotations

import codecs
import errno as _errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode

from simulate.errors import ProblemsError

__all__ = ["read_yaml", "parse_yaml", "SafeLoader", "MAX_BYTES", "MAX_DEPTH"]

#: Largest YAML file read (a scenario is ~3 kB, a grid a little more).
MAX_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (a scenario needs 3).
MAX_DEPTH = 32

_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors and aliases, duplicate keys or deep nesting."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, "anchors and aliases (&name, *name) are not "
                                "allowed; write the values out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class says so
                    break
                if first is not None:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, first)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first: int):
        self.key, self.line, self.first = key, line, first
        super().__init__(f"{key}: duplicate key (line {line}; first at line {first})")


def parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`SafeLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 (SafeLoader subclass)


def read_yaml(path: str | os.PathLike, kind: str,
              error: Callable[[str, list[str]], Exception] | None = None) -> Any:
    """Read a YAML file the user named, or refuse it with a message naming the file.

    Parameters
    ----------
    path : path
        The file.
    kind : str
        What it should hold (``"scenario"``, ``"grid"``), for the messages.
    error : callable, optional
        ``error(source, problems)`` builds the exception to raise (e.g.
        ``ScenarioError``); default :class:`simulate.errors.ProblemsError` of ``kind``.

    Returns
    -------
    object
        The parsed content (never ``None``: an empty file is refused).
    """
    p = Path(path)
    source = str(p)

    def refuse(problem: str) -> Exception:
        return error(source, [problem]) if error else ProblemsError(kind, source, [problem])

    if p.is_dir():
        raise refuse("is a folder, not a file")
    if not p.is_file():
        raise refuse("file not found")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise refuse(f"the file has {size:,} bytes; a {kind} file holds at most "
                         f"{MAX_BYTES:,}")
        raw = p.read_bytes()
    except OSError as exc:
        raise refuse(f"cannot be read: {os.strerror(exc.errno or _errno.EIO).lower()}") from None
    text = _decode(raw, refuse)
    try:
        data = parse_yaml(text)
    except _DuplicateKey as exc:
        raise refuse(str(exc)) from None
    except yaml.YAMLError as exc:
        raise refuse(f"not valid YAML: {exc}") from None
    except RecursionError:  # belt and braces: MAX_DEPTH stops this first
        raise refuse(f"nested too deeply (at most {MAX_DEPTH} levels)") from None
    if data is None:
        raise refuse(f"the file is empty (or holds only comments); write the fields of the "
                     f"{kind} to set, e.g. 'size: {{units: 20}}'")
    return data


def _decode(raw: bytes, refuse) -> str:
    """UTF-8 text of ``raw`` (a UTF-8 byte-order mark is allowed), or a clear refusal."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise refuse(f"is {name} text (byte-order mark); save it as UTF-8")
    if b"\x00" in raw:
        raise refuse("contains NUL bytes: a binary file, or UTF-16/UTF-32 text; "
                     "save it as UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise refuse(f"is not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, "
                     f"column {column} (Latin-1 or Windows-1252?); save the file as "
                     "UTF-8") from None
