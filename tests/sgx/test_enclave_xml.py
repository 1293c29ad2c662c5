"""Enclave.xml parsing: sgx_sign's rules, errors with file:line:col."""

import pytest

from occlum_build.errors import ConfigError
from occlum_build.sgx.enclave_xml import parse_enclave_xml


def test_values_and_defaults():
    c = parse_enclave_xml(b"<EnclaveConfiguration>\n <TCSNum>10</TCSNum>\n"
                          b" <HeapMaxSize>0x100000</HeapMaxSize>"
                          b"<!-- c --><ProdID> 0 </ProdID></EnclaveConfiguration>")
    assert c["TCSNum"] == 10 and c["HeapMaxSize"] == 0x100000 and c["StackMaxSize"] == 0x40000
    assert c.given == {"TCSNum", "HeapMaxSize", "ProdID"}


@pytest.mark.parametrize("body,why", [
    ("<TCSNum>010</TCSNum>", r"^E.xml:1:23: <TCSNum>: '010' has a leading zero.*octal"),
    ("<TCSNum>0</TCSNum>", r"out of range \[0x1, 0xffffffff\]"),
    ("<ProdID>0x10000</ProdID>", "out of range"),
    ("<ProdID>-1</ProdID>", "negative"),
    ("<ProdID>ten</ProdID>", "not a number"),
    ("<ProdID></ProdID>", "has no value"),
    ("<Bogus>1</Bogus>", "unknown element <Bogus>"),
    ("<ProdID>1</ProdID><ProdID>2</ProdID>", "given twice"),
    ('<ProdID a="1">1</ProdID>', "must not have attributes"),
    ("<ProdID><X/></ProdID>", "hold a number"),
    ("<ProdID>1</ProdID", "not well-formed"),
    ("<ProdID>18446744073709551616</ProdID>", "out of range"),
])
def test_bad_xml(body, why):
    with pytest.raises(ConfigError, match=why):
        parse_enclave_xml(f"<EnclaveConfiguration>{body}</EnclaveConfiguration>".encode(), "E.xml")


def test_wrong_root():
    with pytest.raises(ConfigError, match="root element"):
        parse_enclave_xml(b"<Enclave><TCSNum>1</TCSNum></Enclave>", "E.xml")


def test_occlum_style_output():
    """Occlum's generator (serde_xml_rs) writes a declaration and everything on one line."""
    c = parse_enclave_xml(b'<?xml version="1.0" encoding="UTF-8"?><EnclaveConfiguration><ProdID>3</ProdID>'
                          b"<ReservedMemExecutable>1</ReservedMemExecutable><EnableKSS>1</EnableKSS>"
                          b"<ISVEXTPRODID_H>0x1234</ISVEXTPRODID_H></EnclaveConfiguration>")
    assert (c["ProdID"], c["ReservedMemExecutable"], c["ISVEXTPRODID_H"]) == (3, 1, 0x1234)
