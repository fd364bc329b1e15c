"""Loading cases of the AWS signing test suite (../shared/testdata/aws-signing-test-suite)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SUITE = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "aws-signing-test-suite"
SUITE = Path(os.path.normpath(SUITE))


@dataclass
class Case:
    name: str
    folder: Path
    context: dict
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def text(self, name: str) -> str | None:
        p = self.folder / name
        return p.read_text(encoding="utf-8") if p.exists() else None

    @property
    def date(self) -> datetime:
        return datetime.fromisoformat(self.context["timestamp"].replace("Z", "+00:00"))

    @property
    def payload_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def parse_request(raw: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition("\n\n")
    lines = head.split("\n")
    method, rest = lines[0].split(" ", 1)
    path = rest.rsplit(" ", 1)[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
            continue
        name, value = line.split(":", 1)
        headers.append((name, value))
    return method, path, headers, body.encode("utf-8")


def cases(version: str) -> list[Case]:
    root = SUITE / version
    out = []
    for folder in sorted(root.iterdir()):
        if not (folder / "context.json").exists():
            continue
        context = json.loads((folder / "context.json").read_text())
        method, path, headers, body = parse_request((folder / "request.txt").read_text(encoding="utf-8"))
        out.append(Case(folder.name, folder, context, method, path, headers, body))
    return out
