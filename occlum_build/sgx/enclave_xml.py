"""Enclave.xml (``<EnclaveConfiguration>``) as sgx_sign (SDK 2.20, 2.21, 2.26) reads it.

Child elements only, no attributes, no repeats, no unknown names; each value an unsigned
integer in sgx_sign's ``strtoull(text, 0)`` syntax (decimal or ``0x`` hex) and within the
parameter's range.  One deliberate difference: a value with a leading ``0`` (``010``), which
sgx_sign silently reads as octal, is refused, because it almost always means a decimal typo.
Errors name ``file:line:col`` and the element.
"""

from __future__ import annotations

import re
import xml.parsers.expat

from ..errors import ConfigError

U64 = (1 << 64) - 1
HALF = (1 << 63) - 1  # ENCLAVE_MAX_SIZE_64 / 2

# name: (min, max, default) -- sign_tool.cpp main(), in its order.
PARAMETERS: dict[str, tuple[int, int, int]] = {
    "ProdID": (0, 0xFFFF, 0),
    "ISVSVN": (0, 0xFFFF, 0),
    "ReleaseType": (0, 1, 0),
    "IntelSigned": (0, 1, 0),
    "ProvisionKey": (0, 1, 0),
    "LaunchKey": (0, 1, 0),
    "DisableDebug": (0, 1, 0),
    "HW": (0, 0x10, 0),
    "TCSNum": (1, 0xFFFFFFFF, 1),
    "TCSMaxNum": (1, 0xFFFFFFFF, 1),
    "TCSMinPool": (0, 0xFFFFFFFF, 1),
    "TCSPolicy": (0, 1, 1),
    "StackMaxSize": (0x2000, HALF, 0x40000),
    "StackMinSize": (0x2000, HALF, 0x2000),
    "HeapMaxSize": (0, HALF, 0x1000000),
    "HeapMinSize": (0, HALF, 0x1000),
    "HeapInitSize": (0, HALF, 0x1000),
    "ReservedMemMaxSize": (0, HALF, 0),
    "ReservedMemMinSize": (0, HALF, 0),
    "ReservedMemInitSize": (0, HALF, 0),
    "ReservedMemExecutable": (0, 1, 0),
    "MiscSelect": (0, 0xFFFFFFFF, 0),
    "MiscMask": (0, 0xFFFFFFFF, 0xFFFFFFFF),
    "EnableKSS": (0, 1, 0),
    "ISVFAMILYID_H": (0, U64, 0),
    "ISVFAMILYID_L": (0, U64, 0),
    "ISVEXTPRODID_H": (0, U64, 0),
    "ISVEXTPRODID_L": (0, U64, 0),
    "EnclaveImageAddress": (0x1000, U64, 0),
    "ELRangeStartAddress": (0, U64, 0),
    "ELRangeSize": (0x1000, U64, 0),
    "PKRU": (0, 2, 0),
    "AMX": (0, 2, 0),
    "UserRegionSize": (0, HALF, 0),
    "EnableAEXNotify": (0, 1, 0),
    "EnableIPPFIPS": (0, 1, 0),
    "EnableOSSLFIPS": (0, 1, 0),
}

_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[1-9][0-9]*|0")


class EnclaveConfig:
    """Parsed values (the defaults where the file has none); ``given`` holds the names present
    in the file (sgx_sign's ``flag``)."""

    def __init__(self, values: dict[str, int] | None = None, given: set[str] | None = None) -> None:
        self.values = {k: v[2] for k, v in PARAMETERS.items()} if values is None else values
        self.given: set[str] = set() if given is None else given

    def __repr__(self) -> str:
        return f"EnclaveConfig(values={self.values!r}, given={self.given!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnclaveConfig) and (self.values, self.given) == (other.values, other.given)

    def __getitem__(self, name: str) -> int:
        return self.values[name]


def parse_enclave_xml(text: bytes | str, where: str = "Enclave.xml", *,
                      absent: frozenset[str] = frozenset(), sdk: str = "") -> EnclaveConfig:
    """Parse Enclave.xml.  ``absent``: elements the target SDK's sgx_sign does not know (its
    profile's ``xml_parameters_absent``), refused as unknown, naming ``sdk``."""
    cfg = EnclaveConfig()
    parser = xml.parsers.expat.ParserCreate()
    stack: list[tuple[str, str, list[str]]] = []  # (name, file:line:col, text parts)
    state = {"root": False}

    def pos() -> str:
        return f"{where}:{parser.CurrentLineNumber}:{parser.CurrentColumnNumber + 1}"

    def start(name: str, attrs: dict[str, str]) -> None:
        depth = len(stack)
        if depth == 0:
            if name != "EnclaveConfiguration":
                raise ConfigError(f"root element must be <EnclaveConfiguration>, found <{name}>", where=pos())
            state["root"] = True
        elif depth == 1:
            if attrs:
                raise ConfigError(f"<{name}> must not have attributes", where=pos())
            if name not in PARAMETERS:
                known = ", ".join(k for k in PARAMETERS if k not in absent)
                raise ConfigError(f"unknown element <{name}> (known: {known})", where=pos())
            if name in absent:
                raise ConfigError(f"unknown element <{name}>: SDK {sdk} sgx_sign has no such parameter",
                                  where=pos())
            if name in cfg.given:
                raise ConfigError(f"<{name}> given twice", where=pos())
        else:
            raise ConfigError(f"<{name}>: elements of <EnclaveConfiguration> hold a number, not elements",
                              where=pos())
        stack.append((name, pos(), []))

    def end(name: str) -> None:
        el, at, parts = stack.pop()
        raw = "".join(parts)
        if not stack:
            if raw.strip():
                raise ConfigError("text directly inside <EnclaveConfiguration>", where=at)
            return
        value = raw.strip()
        if not value:
            raise ConfigError(f"<{el}> has no value", where=at)
        if "-" in value:
            raise ConfigError(f"<{el}>: negative or malformed value {value!r}", where=at)
        if not _NUMBER.fullmatch(value):
            if re.fullmatch(r"0[0-9]+", value):
                raise ConfigError(f"<{el}>: {value!r} has a leading zero, which sgx_sign reads as octal; "
                                  "write it in decimal without the zero or as 0x hex", where=at)
            raise ConfigError(f"<{el}>: {value!r} is not a number (decimal or 0x hex)", where=at)
        n = int(value, 0)
        lo, hi, _ = PARAMETERS[el]
        if not lo <= n <= hi:
            raise ConfigError(f"<{el}>: {value} is out of range [{lo:#x}, {hi:#x}]", where=at)
        cfg.values[el] = n
        cfg.given.add(el)

    def chars(data: str) -> None:
        if stack:
            stack[-1][2].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as e:
        raise ConfigError(f"not well-formed XML: {xml.parsers.expat.ErrorString(e.code)}",
                          where=f"{where}:{e.lineno}:{e.offset + 1}") from None
    if not state["root"]:
        raise ConfigError("no <EnclaveConfiguration> element", where=where)
    return cfg
