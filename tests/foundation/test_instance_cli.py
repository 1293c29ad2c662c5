"""`occlum new/init/status/gen-image-key` through the real console script."""

import json
import os
import re
import stat
import subprocess
import sys

import pytest

OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]


def occlum(*args, cwd=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(OCCLUM + list(args), cwd=cwd, env=e, capture_output=True, text=True)


def test_new_layout(tmp_path):
    r = occlum("new", "inst", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    inst = tmp_path / "inst"
    assert f"{inst} initialized as an Occlum instance" in r.stdout
    for d in ("bin", "lib", "lib64", "root", "host", "tmp", "dev", "proc", "etc", "sbin", "ext2"):
        assert (inst / "image" / d).is_dir(), d
    for d in ("bin", "lib", "dev", "proc", "etc"):
        assert (inst / "initfs" / d).is_dir(), d
    assert (inst / "image/etc/hosts").read_text() == "127.0.0.1   localhost\n"
    assert (inst / ".__occlum_status").read_text() == "initialized\n"
    assert (inst / "image/lib64/ld-linux-x86-64.so.2").is_file()
    assert stat.S_IMODE(os.stat(inst / "Occlum.json").st_mode) == 0o644
    text = (inst / "Occlum.json").read_text()
    assert "//" not in text and "/*" not in text
    cfg = json.loads(text)  # plain JSON: jq edits work
    assert cfg["resource_limits"]["user_space_size"] == "300MB"
    assert cfg["env"]["default"] == ["OCCLUM=yes"]
    assert cfg["mount"][0]["options"]["layers"][0]["options"] == {"MAC": ""}
    r = occlum("status", cwd=inst)
    assert (r.returncode, r.stdout) == (0, "initialized\n")
    # no temp directories left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inst"]


def test_new_refuses_existing(tmp_path):
    (tmp_path / "x").mkdir()
    r = occlum("new", "x", cwd=tmp_path)
    assert r.returncode == 4
    assert r.stderr.strip() == f'Error: destination "{tmp_path / "x"}" already exists'
    assert list((tmp_path / "x").iterdir()) == []


def test_init_twice_and_status_outside(tmp_path):
    assert occlum("init", cwd=tmp_path).returncode == 0
    r = occlum("init", cwd=tmp_path)
    assert r.returncode == 4 and "initialized as an Occlum instance already" in r.stderr
    r = occlum("status", cwd=tmp_path / "image")
    assert r.returncode == 4 and "is not an Occlum instance" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_init_ra(tmp_path):
    r = occlum("new", "ra", "--init-ra", "grpc_ratls", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    conf = json.loads((tmp_path / "ra/init_ra_conf.json").read_text())
    assert set(conf) == {"kms_server", "kms_keys", "ra_config"}
    r = occlum("new", "rb", "--init-ra", "tdx", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_gen_image_key(tmp_path):
    r = occlum("gen-image-key", "key", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "key").read_text()
    assert re.fullmatch(r"([0-9a-f]{2}-){15}[0-9a-f]{2}\n", text)
    assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600
    r = occlum("gen-image-key", "key", cwd=tmp_path)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    assert (tmp_path / "key").read_text() == text
    assert occlum("gen-image-key", "-f", "key", cwd=tmp_path).returncode == 0
    assert (tmp_path / "key").read_text() != text


@pytest.mark.parametrize("parent", ["nodir", "afile"])
def test_gen_image_key_into_a_missing_directory(tmp_path, parent):
    """Was FileNotFoundError (exit 70); the directory is not created behind the user's back."""
    (tmp_path / "afile").write_text("")
    r = occlum("gen-image-key", f"{parent}/key", cwd=tmp_path)
    why = "does not exist" if parent == "nodir" else "is not a directory"
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"Error: {tmp_path / parent / 'key'}: cannot write the key: the directory "
                        f"{tmp_path / parent} {why}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("cmd", ["new", "init", "status", "gen-image-key"])
def test_help(cmd):
    r = occlum(cmd, "--help")
    assert r.returncode == 0 and f"occlum {cmd}" in r.stdout


def test_top_help_and_unknown():
    r = occlum("--help")
    assert r.returncode == 0 and "occlum new <path>" in r.stdout
    r = occlum("frobnicate")
    assert r.returncode == 2 and r.stderr.startswith("Error: occlum:") and r.stderr.count("\n") == 1


def test_log_level_bad_value_warns(tmp_path):
    r = occlum("status", cwd=tmp_path, env={"OCCLUM_LOG_LEVEL": "loud"})
    assert "OCCLUM_LOG_LEVEL='loud'" in r.stderr
    r = occlum("status", cwd=tmp_path, env={"OCCLUM_LOG_LEVEL": "off"})
    assert "OCCLUM_LOG_LEVEL" not in r.stderr


def test_new_creates_missing_parents_as_occlum_does(tmp_path):
    """`occlum new a/b/c` is Occlum's `mkdir -p a/b/c` + init (was: an error)."""
    r = occlum("new", "a/b/c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    inst = tmp_path / "a" / "b" / "c"
    assert (inst / ".__occlum_status").read_text() == "initialized\n"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c"]  # no temp dir left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o777 & ~umask  # as mkdir -p


def test_new_with_a_file_in_the_way_of_a_parent(tmp_path):
    (tmp_path / "f").write_text("")
    r = occlum("new", "f/b/c", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == f'Error: cannot create the instance: "{tmp_path / "f"}" is not a directory\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
