"""`vt-ops new NAME [--cuda]`: copy sdk/templates/pack (and, with --cuda, the files of
sdk/templates/cuda over it) into a new folder, filling in the names."""
from __future__ import annotations

import keyword
import re
from pathlib import Path

import click

from . import main
from ._sdk import sdk_dir

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
# the name becomes file names (libvt_NAME.so, src/NAME.cpp, ...), which the file system limits
# to 255 bytes; 64 leaves room and keeps op names readable
MAX_NAME = 64


def _check_ident(kind: str, value: str) -> str:
    if len(value) > MAX_NAME:
        raise click.BadParameter(f"{kind} is {len(value)} characters long; at most {MAX_NAME} are allowed")
    if not _IDENT.match(value) or keyword.iskeyword(value):
        raise click.BadParameter(
            f"{kind} {value!r} must be a lowercase identifier ([a-z_][a-z0-9_]*), not a Python keyword"
        )
    return value


def scaffold(name: str, dest: Path, namespace: str, cuda: bool = False) -> list[Path]:
    """Writes the template pack into `dest`; returns the files written. With `cuda`, the files of
    templates/cuda replace or join those of templates/pack (a CUDA kernel on the SDK launchers)."""
    layers = ["pack"] + (["cuda"] if cuda else [])
    files: dict[str, Path] = {}  # destination name -> template file (later layers win)
    for layer in layers:
        tpl = sdk_dir() / "templates" / layer
        if not tpl.is_dir():
            raise click.ClickException(f"pack template not found at {tpl}")
        for src in sorted(p for p in tpl.rglob("*") if p.is_file()):
            rel = src.relative_to(tpl).as_posix().replace("__name__", name)
            if rel.endswith(".tmpl"):  # so pytest and compilers never pick up the raw templates
                rel = rel[: -len(".tmpl")]
            if rel == "gitignore":  # stored without the dot so packaging never drops it
                rel = ".gitignore"
            files[rel] = src
    written = []
    for rel, src in sorted(files.items()):
        text = src.read_text().replace("{{name}}", name).replace("{{namespace}}", namespace)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        written.append(out)
    return written


@main.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to create (default: ./NAME).")
@click.option("--namespace", "-n", help="Op namespace (default: NAME), as in NS::scale.")
@click.option("--cuda", is_flag=True,
              help="Add a CUDA kernel (src/NAME_cuda.cu, on the SDK's vt/cuda launchers) next to the "
                   "CPU one; it compiles where nvcc is found.")
def new(name, directory, namespace, cuda):
    """Scaffold an op pack NAME with one op, its CMake file and a test."""
    _check_ident("pack name", name)
    namespace = _check_ident("namespace", namespace or name)
    dest = directory or Path(name)
    try:
        if dest.exists() and any(dest.iterdir()):
            raise click.ClickException(f"{dest} exists and is not empty")
        files = scaffold(name, dest, namespace, cuda=cuda)
    except OSError as e:
        raise click.ClickException(f"cannot create the pack in {dest}: {e.strerror}") from None
    click.echo(f"created pack '{name}' in {dest}/" + (" (CPU + CUDA)" if cuda else ""))
    for f in files:
        click.echo(f"  {f.relative_to(dest)}")
    click.echo(f"next: vt-ops build {dest}   then   pytest {dest / 'tests'}")
