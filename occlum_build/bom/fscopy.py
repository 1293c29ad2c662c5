"""rsync -a semantics without rsync: tree walk with excludes and unsafe links, quick-check copy.

What Occlum's copy_bom asks of rsync, done here in-process:
- ``rsync -aL src dest`` for files: the content (symlinks followed), mode, owner (as root) and
  mtime; a destination with the same size and mtime (nanoseconds) is up to date.
- ``rsync -ar --copy-unsafe-links [--exclude=P]... src dest`` for dirs: the tree with modes,
  mtimes, owners; symlinks kept unless "unsafe" (absolute, or climbing above the top of the
  transfer), in which case what they point to is copied.  Special files (FIFOs, sockets,
  devices), which rsync -a would copy, are left out with a warning each: an SEFS image cannot
  hold them (sefs-cli and our image stage skip them, with the same kind of warning).
Nothing is ever deleted from the destination.  Each file is written to a temporary name in its
destination directory and renamed, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import operator
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import fsutil, pathlimit
from ..errors import BomError, OutputError

IS_ROOT = os.geteuid() == 0
S_ISREG, S_ISLNK, S_ISDIR = stat.S_ISREG, stat.S_ISLNK, stat.S_ISDIR
_BY_NAME = operator.attrgetter("name")


@dataclass(slots=True)
class Entry:
    """One thing a dir copy writes: ``rel`` is relative to the copy's destination dir."""

    src: str
    rel: str
    kind: str  # "dir" | "file" | "link"
    st: os.stat_result
    link: str | None = None


def compile_excludes(patterns: Sequence[str]) -> list[tuple[re.Pattern[str], bool]]:
    """rsync --exclude patterns: no '/' matches a name at any depth, a leading '/' anchors at
    the top of the transfer, a trailing '/' matches only dirs, '*' stops at '/', '**' does not."""
    out = []
    for pat in patterns:
        dir_only = pat.endswith("/") and pat != "/"
        p = pat.rstrip("/") if dir_only else pat
        anchored = p.startswith("/")
        p = p.lstrip("/")
        rx = ""
        i = 0
        while i < len(p):
            c = p[i]
            if p.startswith("**", i):
                rx += ".*"
                i += 2
                continue
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[":
                j = p.find("]", i + 1)
                if j < 0:
                    rx += re.escape(c)
                else:
                    rx += p[i:j + 1]
                    i = j
            else:
                rx += re.escape(c)
            i += 1
        prefix = "^" if anchored else "^(?:.*/)?"
        out.append((re.compile(prefix + rx + "$"), dir_only))
    return out


def _excluded(rel: str, is_dir: bool, excludes: list[tuple[re.Pattern[str], bool]]) -> bool:
    if not excludes:
        return False
    for rx, dir_only in excludes:
        if (is_dir or not dir_only) and rx.match(rel):
            return True
    return False


def unsafe_link(rel: str, target: str) -> bool:
    """rsync's unsafe_symlink: absolute, or going above the top of the transfer."""
    if not target or target.startswith("/"):
        return True
    depth = rel.count("/")  # dirs between the transfer top and the link
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


def walk_tree(src: str, contents: bool, excludes: Sequence[str],
              warn: Callable[[str], None], skip: tuple[int, int] | None = None) -> list[Entry]:
    """Entries a dir copy of ``src`` writes, parents before children.  ``contents`` (a trailing
    '/') copies what is inside ``src``; otherwise ``src``'s own name is the top of the result.
    ``skip`` (device, inode): a dir never entered, the destination root when it lies inside
    ``src`` (rsync would copy the root into itself, one level deeper on every run)."""
    rx = compile_excludes(excludes)
    out: list[Entry] = []
    src = src.rstrip("/") or "/"
    st = os.stat(src)
    if contents:
        _walk(src, "", rx, out, warn, skip)
    else:
        top = os.path.basename(src)
        out.append(Entry(src, top, "dir", st))
        _walk(src, top, rx, out, warn, skip)
    return out


def _walk(d: str, rel: str, rx: list[tuple[re.Pattern[str], bool]], out: list[Entry],
          warn: Callable[[str], None], skip: tuple[int, int] | None,
          seen: frozenset[tuple[int, int]] = frozenset()) -> None:
    """``rel``: ``d`` relative to the top of the transfer (what excludes and the unsafe-link
    rule see), which is also where its entries land below the copy's destination."""
    try:
        with os.scandir(d) as sd:
            it = sorted(sd, key=_BY_NAME)
    except OSError as e:
        raise BomError(pathlimit.error_message(e, d) or f"cannot read directory: {e.strerror or e}",
                       where=None if pathlimit.too_long(d) else d) from None
    prefix = rel + "/" if rel else ""
    append = out.append
    for e in it:  # the no-change run spends most of its time here: keep the common path short
        r = prefix + e.name
        try:
            st = e.stat(follow_symlinks=False)
        except OSError as err:
            raise _source_error(err, e.path) from None
        mode = st.st_mode
        if S_ISREG(mode):
            if not (rx and _excluded(r, False, rx)):
                append(Entry(e.path, r, "file", st))
            continue
        if S_ISLNK(mode):
            target = os.readlink(e.path)
            if not unsafe_link(r, target):
                if not _excluded(r, False, rx):
                    append(Entry(e.path, r, "link", st, target))
                continue
            try:  # unsafe: copy what it points to
                st = os.stat(e.path)
            except OSError:
                warn(f"symlink {e.path} -> {target} points outside the copied dir and has no target; "
                     "skipped")
                continue
            mode = st.st_mode
        if S_ISDIR(mode):
            if _excluded(r, True, rx):
                continue
            key = (st.st_dev, st.st_ino)
            if key == skip:
                warn(f"{e.path} is the destination root; not copied into itself")
                continue
            if key in seen:
                warn(f"{e.path}: symlink loop; skipped")
                continue
            append(Entry(e.path, r, "dir", st))
            _walk(e.path, r, rx, out, warn, skip, seen | {key})
        elif _excluded(r, False, rx):
            continue
        elif S_ISREG(mode):
            append(Entry(e.path, r, "file", st))
        else:
            warn(f"{e.path}: {fsutil.special_kind(mode)}, not copied (an image cannot hold it: "
                 "sefs-cli and occlum build skip it)")


def quick_check(d: os.stat_result | None, st: os.stat_result) -> str:
    """rsync's quick check of a destination file (lstat ``d``, None if absent) against its
    source ``st``: 'copied' (to be copied), 'attrs' (only mode/owner to set) or 'same'."""
    if d is None or not stat.S_ISREG(d.st_mode) or d.st_size != st.st_size \
            or d.st_mtime_ns != st.st_mtime_ns:
        return "copied"
    return "attrs" if attrs_differ(d, st) else "same"


class Writer:
    """Writes into the image root, refusing any write that would land outside it."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.root_real = os.path.realpath(self.root)
        self._checked: set[str] = set()

    def check_parent(self, dest: str, shown: str | None = None) -> None:
        """Refuse ``dest`` if a symlink on its way (in the root) leads outside the root;
        ``shown``: the path the message names instead of ``dest``."""
        if dest == self.root or self.root.startswith(dest + os.sep):
            return  # the root itself (or a dir above it): created as given
        parent = os.path.dirname(dest)
        if parent in self._checked:
            return
        up = os.path.dirname(parent)
        if up in self._checked or up == self.root:
            try:  # a plain dir below a checked one is inside the root: one lstat, no realpath
                if stat.S_ISDIR(os.lstat(parent).st_mode):
                    self._checked.add(parent)
                    return
            except OSError:
                pass
        real = os.path.realpath(parent)
        if real != self.root_real and not real.startswith(self.root_real + os.sep):
            # name the first symlink on the way for the message
            rel = os.path.relpath(parent, self.root)
            cur = self.root
            culprit = parent
            for part in rel.split(os.sep):
                cur = os.path.join(cur, part)
                if os.path.islink(cur):
                    culprit = f"{cur} -> {os.readlink(cur)}"
                    break
            raise BomError(f"refusing to write {shown or dest}: the symlink {culprit} leads outside the root "
                           f"{self.root}; remove it or change the bom")
        self._checked.add(parent)

    def existing_dir(self, dest: str) -> os.stat_result | None:
        """lstat of ``dest`` if it is a real dir (no symlink) right below a checked dir: then
        it is inside the root and files may go into it (what mkdir + check_parent would
        conclude, with one system call instead of three).  None: take the long way."""
        parent = os.path.dirname(dest)
        if parent not in self._checked and parent != self.root:
            return None
        try:
            d = os.lstat(dest)
        except OSError:
            return None
        if not stat.S_ISDIR(d.st_mode):
            return None
        self._checked.add(dest)
        return d

    def mkdir(self, dest: str, mode: int = 0o755) -> bool:
        """mkdir -p inside the root; True if something was created."""
        if pathlimit.too_long(dest):
            raise BomError(pathlimit.message(dest, "destination"))
        if os.path.isdir(dest):
            self.check_parent(os.path.join(dest, "x"))
            return False
        missing = [dest]  # dest and its missing parents, deepest first (a loop: deep targets
        parent = os.path.dirname(dest)  # must not hit Python's recursion limit)
        while parent != missing[-1] and not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        created = False
        for d in reversed(missing):
            self.check_parent(d)
            try:
                if os.path.lexists(d) and not os.path.isdir(d):
                    raise BomError(f"cannot create directory {d}: a file is in the way")
                os.mkdir(d, mode)
                os.chmod(d, mode)  # not umask-dependent: the image must not vary with umask
                created = True
            except FileExistsError:
                continue
            except OSError as e:
                raise _write_error(e, d, "mkdir failed") from None
        return created

    def symlink(self, target: str, dest: str, st: os.stat_result | None = None) -> bool:
        """ln -s target dest (replacing a file or link there); False if already that link."""
        self.check_parent(dest)
        try:
            if os.path.islink(dest) and os.readlink(dest) == target:
                if st is not None and os.lstat(dest).st_mtime_ns != st.st_mtime_ns:
                    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                return False
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise BomError(f"cannot create symlink {dest}: a directory is in the way")
            tmp = _tmp_name(dest)
            os.symlink(target, tmp)
            if st is not None:
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                if IS_ROOT:
                    os.chown(tmp, st.st_uid, st.st_gid, follow_symlinks=False)
            os.replace(tmp, dest)
        except OSError as e:
            raise _write_error(e, dest, "cannot create symlink") from None
        return True

    def file(self, src: str, st: os.stat_result, dest: str, parent_ok: bool = False) -> str:
        """Copy a regular file with rsync's quick check; 'copied', 'attrs' or 'same'.
        ``parent_ok``: the caller has checked the destination dir already."""
        if not parent_ok:
            self.check_parent(dest)
        try:
            d = os.lstat(dest)
        except FileNotFoundError:
            d = None
        except OSError as e:
            raise _write_error(e, dest, "cannot stat") from None
        what = quick_check(d, st)
        if what == "attrs":
            _set_attrs(dest, st)
        if what != "copied":
            return what
        if d is not None and stat.S_ISDIR(d.st_mode):
            raise BomError(f"cannot copy {src} to {dest}: a directory is in the way")
        tmp = _tmp_name(dest)
        try:
            shutil.copyfile(src, tmp)
            _set_attrs(tmp, st)
            os.replace(tmp, dest)
        except PermissionError as e:
            _unlink_quiet(tmp)
            if not os.access(src, os.R_OK):
                raise BomError(f"cannot read source file: {e.strerror}", where=src) from None
            raise OutputError(f"cannot write: {e.strerror}", where=dest) from None
        except OSError as e:
            _unlink_quiet(tmp)
            raise _write_error(e, dest, f"copy {src} failed") from None
        return "copied"

    def dir_attrs(self, dest: str, st: os.stat_result, d: os.stat_result | None = None) -> bool:
        """Give a copied dir its source's mode, owner and mtime; True if mode/owner changed
        (a changed mtime alone is the trace of files just copied into it).  ``d``: a stat of
        ``dest`` known to be current (nothing written since), saving a system call."""
        try:
            if d is None:
                d = os.stat(dest)
            differ = attrs_differ(d, st)
            if differ or d.st_mtime_ns != st.st_mtime_ns:
                _set_attrs(dest, st)
            return differ
        except OSError as e:
            raise _write_error(e, dest, "cannot set attributes") from None


def attrs_differ(d: os.stat_result, st: os.stat_result) -> bool:
    if stat.S_IMODE(d.st_mode) != stat.S_IMODE(st.st_mode):
        return True
    return IS_ROOT and (d.st_uid != st.st_uid or d.st_gid != st.st_gid)


def _set_attrs(path: str, st: os.stat_result) -> None:
    if IS_ROOT:
        os.chown(path, st.st_uid, st.st_gid)  # before chmod: chown clears set-id bits
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _source_error(e: OSError, path: str) -> BomError:
    """A source that cannot be stat-ed: the path-limit error for a path over it, else the
    error naming the path."""
    too_long = pathlimit.error_message(e, path)
    if too_long:
        return BomError(too_long)
    return BomError(f"cannot stat: {e.strerror or e}", where=path)


def _write_error(e: OSError, dest: str, what: str) -> BomError | OutputError:
    """A write into the root failed: a destination path over the Linux limit is bad input
    (exit 2, path shortened); anything else is a failed write (exit 5) naming ``dest``."""
    too_long = pathlimit.error_message(e, dest, "destination")
    if too_long:
        return BomError(too_long)
    return OutputError(f"{what}: {e.strerror or e}", where=dest)


def _tmp_name(dest: str) -> str:
    return os.path.join(os.path.dirname(dest),
                        fsutil.temp_name(os.path.basename(dest), fsutil.COPY_BOM_TAG))


def _unlink_quiet(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
