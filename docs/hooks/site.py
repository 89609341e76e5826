"""MkDocs hooks: the README is the site's home page (its links into docs/
made relative), and the bus contract (the AsyncAPI document and every JSON
Schema in contracts/) is published with the site, listed on a page of its
own, so the site is the whole contract for a team outside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: Any) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = readme.replace("](docs/index.md)", "](index.md)").replace("](docs/", "](").replace(
        "[`docs/`](index.md)", "these pages")
    files.append(File.generated(config, "index.md", content=readme))
    contracts = ROOT / "contracts"
    found = sorted(p.relative_to(contracts).as_posix() for p in contracts.rglob("*.json"))
    for name in found:
        files.append(File.generated(config, f"contracts/{name}", abs_src_path=str(contracts / name)))
    listing = ["# Contracts", "",
               "The bus as an [AsyncAPI 3 document](asyncapi.json), and the JSON Schema of every command, "
               "event, query, reply and alert (generated from `contracts/`; `make schemas`, `make asyncapi`). "
               "The running console serves the same files at `/contracts/`.", ""]
    listing += [f"- [{name}]({name})" for name in found]
    files.append(File.generated(config, "contracts/index.md", content="\n".join(listing) + "\n"))
    return files
