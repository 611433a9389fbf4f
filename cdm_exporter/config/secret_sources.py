"""The :class:`Secret` type and the three ways a secret reaches the configuration.

A secret is given inline in the YAML, as a ``*_file`` path, or as a ``*_env`` variable name.
Whatever the source, the value is wrapped in :class:`Secret` at once, so that no ``repr``,
``str`` or log line of a config object can show it, and every error raised here names the
key and the source (path, variable name) but never the value or the file's contents.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping

from cdm_exporter.api.secret import Secret

from .errors import ConfigError

log = logging.getLogger("cdm_exporter.config")

#: Upper bound on a secret file. An IAM token is a few kB; anything near this is the wrong
#: file (a log, a device), and the bound keeps such a mistake from eating memory.
MAX_SECRET_FILE_BYTES = 1 << 20

# Control characters (C0, DEL, C1) and Unicode line/paragraph separators. A secret ends up in
# an HTTP header or a JSON body; a stray line break there is always a copy-paste accident.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret_from_text(text: str, key: str, source: str) -> Secret:
    """Wrap ``text`` after checking it is usable; ``source`` describes where it came from."""
    if not text:
        raise ConfigError(key, f"{source} is empty")
    if not text.strip():  # the client would refuse it when the exporter starts (auth._secret)
        raise ConfigError(key, f"{source} is blank (only whitespace)")
    if _CONTROL.search(text):
        raise ConfigError(
            key, f"{source} contains a line break or another control character (value not shown)"
        )
    return Secret(text)


def read_secret_file(path: str, key: str) -> Secret:
    """Read a secret from ``path`` once, dropping the trailing newline editors and ``echo`` add.

    Only a regular file is accepted: a FIFO would block the start-up and a device has no end.
    A file that other users can read is accepted with a warning; refusing it would break
    deployments that work (the Kubernetes default mode is 0644).
    """
    where = f"secret file {path}"
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(key, f"{where} is not a regular file")
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {where}: {exc.strerror or type(exc).__name__}") from None
    except ValueError:  # a NUL byte or an unencodable character in the path
        raise ConfigError(key, f"{path!r} is not a usable file path") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(key, f"{where} is larger than {MAX_SECRET_FILE_BYTES} bytes; is it the right file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(key, f"{where} is not UTF-8 text") from None
    if readable_by_others(info):
        log.warning(
            "%s: %s is readable by group or others (mode %04o); restrict it with chmod 600",
            key,
            where,
            stat.S_IMODE(info.st_mode),
            extra={"key": key, "path": path},
        )
    return secret_from_text(text.rstrip("\r\n"), key, where)


def readable_by_others(info: os.stat_result) -> bool:
    """Whether users other than this process can read the file.

    The group bit does not count when it is how this process reads the file: not the owner,
    but in the file's group. That is the Kubernetes pattern (root-owned Secret files, mode
    0440, ``fsGroup`` set to the exporter's group), where there is no better mode to choose.
    """
    if info.st_mode & stat.S_IROTH:
        return True
    if not info.st_mode & stat.S_IRGRP:
        return False
    reads_through_group = info.st_uid != os.geteuid() and info.st_gid in {os.getegid(), *os.getgroups()}
    return not reads_through_group


def secret_from_env(env: Mapping[str, str], name: str, key: str) -> Secret:
    """Take a secret from the environment variable ``name``; unset or empty is an error."""
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(key, f"{name!r} is not an environment variable name (letters, digits, _)")
    value = env.get(name)
    if value is None:
        raise ConfigError(key, f"environment variable {name} is not set")
    return secret_from_text(value, key, f"environment variable {name}")
