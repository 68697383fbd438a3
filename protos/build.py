"""Generates the Python code and the descriptor set from the protos.

    python protos/build.py          write emostream/v1/ and deploy/envoy/emostream.pb
    python protos/build.py --check  fail if the checked-in outputs are stale

The outputs are checked in so that the SDK installs without a protobuf
compiler; ``--check`` (run by ``make check``) keeps them equal to the protos.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = pathlib.Path("emostream") / "v1"
DESCRIPTOR_SET = pathlib.Path("deploy") / "envoy" / "emostream.pb"


def _include_dirs() -> list[str]:
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    import google.api

    googleapis = pathlib.Path(google.api.__path__[0]).parent.parent
    return [str(PROTOS), str(well_known), str(googleapis)]


def generate(out: pathlib.Path) -> None:
    """Writes the generated package and the descriptor set below ``out``."""
    sources = sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE).glob("*.proto")
    )
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    (out / DESCRIPTOR_SET).parent.mkdir(parents=True, exist_ok=True)

    args = [
        "protoc",
        *(f"-I{d}" for d in _include_dirs()),
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        "--include_imports",
        f"--descriptor_set_out={out / DESCRIPTOR_SET}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")

    (out / PACKAGE / "__init__.py").write_text(
        '"""Generated from protos/emostream/v1 by protos/build.py; do not edit."""\n'
    )


def _outputs(base: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(p.relative_to(base) for p in (base / PACKAGE).glob("*.py*"))
    return [*files, DESCRIPTOR_SET]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    check = parser.parse_args().check

    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp)
        generate(fresh)
        expected = _outputs(fresh)
        if check:
            stale = [
                str(p)
                for p in expected
                if not (ROOT / p).exists()
                or not filecmp.cmp(fresh / p, ROOT / p, shallow=False)
            ]
            if stale:
                print("stale generated files (run make protos):", *stale, sep="\n  ")
                return 1
            return 0
        for p in expected:
            (ROOT / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / p, ROOT / p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
