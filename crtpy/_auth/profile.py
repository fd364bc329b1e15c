"""The shared AWS config and credentials files (``~/.aws/config``, ``~/.aws/credentials``).

:func:`parse` reads one file into ``{profile name: {key: value}}``.  In the config file a
profile section is ``[profile NAME]`` (``[default]`` is also accepted, and ``[sso-session
X]`` / ``[services X]`` sections are ignored); in the credentials file it is ``[NAME]``.
Lines starting with ``#`` or ``;`` are comments; indented lines under a key with an empty
value are sub-properties and are skipped.  :func:`load` merges both files, the credentials
file winning for keys present in both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .._errors import error

Profiles = dict[str, dict[str, str]]


def config_path(explicit: str | None = None) -> str:
    path = explicit or os.environ.get("AWS_CONFIG_FILE") or os.path.join("~", ".aws", "config")
    return os.path.expanduser(path)


def credentials_path(explicit: str | None = None) -> str:
    path = (explicit or os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
            or os.path.join("~", ".aws", "credentials"))
    return os.path.expanduser(path)


def profile_name(explicit: str | None = None) -> str:
    return explicit or os.environ.get("AWS_PROFILE") or "default"


def parse(text: str, is_config: bool) -> Profiles:
    profiles: Profiles = {}
    current: dict[str, str] | None = None
    in_property_block = False
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            in_property_block = False
            end = stripped.find("]")
            if end < 0:
                current = None
                continue
            name = stripped[1:end].strip()
            if is_config:
                if name == "default":
                    pass
                elif name.startswith(("profile ", "profile\t")):
                    name = name[8:].strip()
                else:
                    current = None  # sso-session, services, ... sections
                    continue
            if not name:
                current = None
                continue
            current = profiles.setdefault(name, {})
            continue
        if current is None:
            continue
        if raw[0] in " \t":
            if in_property_block:
                continue  # a sub-property
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            continue
        key = key.strip()
        # strip an inline comment introduced by whitespace + '#' or ';'
        value = value.strip()
        for marker in (" #", " ;", "\t#", "\t;"):
            idx = value.find(marker)
            if idx >= 0:
                value = value[:idx].rstrip()
        in_property_block = value == ""
        if key:
            current[key] = value
    return profiles


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


@dataclass
class ProfileSet:
    config: Profiles = field(default_factory=dict)
    credentials: Profiles = field(default_factory=dict)

    def get(self, name: str) -> dict[str, str] | None:
        if name not in self.config and name not in self.credentials:
            return None
        merged = dict(self.config.get(name, {}))
        merged.update(self.credentials.get(name, {}))
        return merged


def load(config_file: str | None = None, credentials_file: str | None = None,
         require_any: bool = True) -> ProfileSet:
    """Read both files.  With ``require_any``, a missing pair of files is an error."""
    cfg_text = _read(config_path(config_file))
    cred_text = _read(credentials_path(credentials_file))
    if require_any and cfg_text is None and cred_text is None:
        raise error("AWS_ERROR_FILE_INVALID_PATH", "Neither the AWS config nor the credentials file could be read.")
    return ProfileSet(parse(cfg_text or "", True), parse(cred_text or "", False))
