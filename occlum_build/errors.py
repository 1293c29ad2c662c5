"""The one exception type that reaches users, and the documented exit codes.

Every stage raises :class:`OcclumError` (or a subclass) for bad input; the CLI prints
``str(err)`` as one line and exits with ``err.exit_code``.  Anything else escaping a
command is a bug and is reported as such (exit 70) with the traceback only at debug level.
"""

from __future__ import annotations

# Documented exit codes (docs/exit-codes.md).  One place; import these, never literals.
EXIT_OK = 0
EXIT_FAILURE = 1  # a command failed for a reason other than bad input (e.g. a tool failed)
EXIT_USAGE = 2  # bad input: config, arguments, key files, bom files
EXIT_VERIFY = 3  # integrity or signature check failed (tampering, wrong key)
EXIT_STATE = 4  # instance in the wrong state (not initialized / not built / busy / running)
EXIT_IO = 5  # I/O failure while writing outputs (disk full, permissions)
EXIT_INTERNAL = 70  # a bug in occlum-build
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class OcclumError(Exception):
    """A user-facing failure: one line naming what and where."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None, where: str | None = None):
        self.message = message
        self.where = where
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(OcclumError):
    """Occlum.json, Enclave.xml or another configuration is invalid."""


class BomError(OcclumError):
    """A bom file is invalid or cannot be carried out."""


class KeyFileError(OcclumError):
    """A key file (image key or signing key) is missing or malformed."""


class VerifyError(OcclumError):
    """An integrity, MAC or signature check failed."""

    exit_code = EXIT_VERIFY


class StateError(OcclumError):
    """The instance is not in a state that allows the command."""

    exit_code = EXIT_STATE


class OutputError(OcclumError):
    """Writing an output failed (disk full, permissions); previous outputs are intact."""

    exit_code = EXIT_IO
