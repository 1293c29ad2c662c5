"""`occlum package`: Occlum's runtime contents, refusal rules, reproducible archives."""

from __future__ import annotations

import json
import os
import tarfile

import pytest
from pipeline_helpers import Occlum, make_instance, needs_native

from occlum_build.errors import EXIT_STATE, EXIT_USAGE
from occlum_build.package import sha256_of

pytestmark = needs_native


def _release(inst):
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["metadata"]["debuggable"] = False
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))


def test_refuses_unbuilt_debuggable_and_sim(inst, occlum):
    rc, _, err = occlum("package")
    assert rc == EXIT_STATE and "not built" in err
    occlum.build()
    rc, _, err = occlum("package")
    assert rc == EXIT_USAGE and "debuggable" in err
    _release(inst)
    occlum.build()
    rc, _, err = occlum("package")
    assert rc == EXIT_USAGE and "SIM" in err
    rc, out, err = occlum("package", "--debug")
    assert rc == 0, err
    assert (inst / f"{inst.name}.tar.gz").is_file()


@pytest.mark.slow
def test_contents_and_reproducible(tmp_path, capsys, monkeypatch):
    """Same instance content at another path, built and packed under another umask: same bytes
    (with one signing key and the SIGSTRUCT date pinned by SOURCE_DATE_EPOCH)."""
    from occlum_build.sgx.signer import generate_signing_key

    generate_signing_key(tmp_path / "sign.pem")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = make_instance(tmp_path / "a", "app"), make_instance(tmp_path / "b", "app")
    shas = []
    for inst, umask in ((a, 0o022), (b, 0o077)):
        old = os.umask(umask)
        try:
            oc = Occlum(inst, capsys)
            oc.build("--sign-key", str(tmp_path / "sign.pem"))
            rc, out, err = oc("package", "--debug", "pkg")
            assert rc == 0, err
            shas.append(sha256_of(inst / "pkg.tar.gz"))
            # again, after a touch of every file: same bytes
            for p in inst.rglob("*"):
                os.utime(p, (1, 1), follow_symlinks=False)
            rc, _, _ = oc("package", "--debug", "pkg")
            assert sha256_of(inst / "pkg.tar.gz") == shas[-1]
        finally:
            os.umask(old)
    assert shas[0] == shas[1]
    with tarfile.open(a / "pkg.tar.gz") as t:
        names = t.getnames()
        members = t.getmembers()
    assert names[0] == "pkg" and names[1:] == sorted(names[1:], key=lambda n: n.encode())
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.mtime == 1700000000 for m in members)
    assert all(m.mode in (0o755, 0o644, 0o777) for m in members)
    for must in ("pkg/Occlum.json", "pkg/build/.Occlum_sys.json.protected", "pkg/build/mount/.ROOT_MAC",
                 "pkg/build/mount/__ROOT/metadata", "pkg/build/initfs/.ROOT_MAC",
                 "pkg/build/lib/libocclum-pal.so", "pkg/.__occlum_status", "pkg/.sgx_mode",
                 "pkg/build/lib/libocclum-libos.signed.so",
                 "pkg/run/mount/__ROOT", "pkg/initfs/etc/hosts"):
        assert must in names, must
    for never in ("pkg/image", "pkg/build/Enclave.xml", "pkg/build/.state", "pkg/build/report.json",
                  "pkg/.dev_sign_key.pem", "pkg/build/lib/libocclum-libos.so"):
        assert not any(n == never or n.startswith(never + "/") for n in names), never
