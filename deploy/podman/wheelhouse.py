"""Download the wheels the image installs into a folder of the build context.

For builds that cannot reach a package index: the Dockerfile installs from this folder
with `--build-arg WHEELS=build/wheels`. What to download is derived, not listed: the
build backend (to install tabserve itself), the requirements the Dockerfile's dependency
layer prints from pyproject.toml, and any extras its `pip install` lines name. Wheels are
chosen for the image's Python and C library, which may differ from this host's.

    python3 deploy/podman/wheelhouse.py build/wheels --python-version 3.11 --glibc 2.36
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The oldest glibc a manylinux_2_x tag names; older wheels use the legacy aliases below.
OLDEST_GLIBC_MINOR = 17
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def dependency_layer_requirements(dockerfile: str, repo: Path) -> list[str]:
    """What the Dockerfile's `python -c "...tomllib..."` one-liner prints, run for real."""
    found = re.search(r'python -c "([^"]*tomllib[^"]*)"', dockerfile)
    if found is None:
        raise ValueError('the Dockerfile has no `python -c "...tomllib..."` requirements step')
    printed = subprocess.run(
        [sys.executable, "-c", found.group(1)], cwd=repo, capture_output=True, text=True, check=True
    )
    return printed.stdout.split()


def installed_extras(dockerfile: str) -> list[str]:
    """Extras named by the Dockerfile's installs of the project, as in `pip install '.[a,b]'`."""
    code = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    extras = []
    for group in re.findall(r"(?:\.|tabserve)\[([\w,\s-]+)\]", code):
        extras += [name.strip() for name in group.split(",") if name.strip()]
    return sorted(set(extras))


def image_requirements(repo: Path = REPO) -> list[str]:
    """Every requirement the image build installs, in a stable order."""
    dockerfile = (repo / "Dockerfile").read_text()
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    optional = pyproject["project"].get("optional-dependencies", {})
    wanted = list(pyproject["build-system"]["requires"])
    wanted += dependency_layer_requirements(dockerfile, repo)
    for extra in installed_extras(dockerfile):
        if extra not in optional:
            raise ValueError(f"the Dockerfile installs extra {extra!r}, which pyproject.toml lacks")
        wanted += optional[extra]
    return sorted(set(wanted), key=wanted.index)


def platform_tags(glibc: str, arch: str) -> list[str]:
    """The manylinux platforms a glibc `2.N` system runs, newest first (as pip's own)."""
    major, minor = (int(part) for part in glibc.split("."))
    if major != 2:
        raise ValueError(f"glibc {glibc}: expected a 2.N version")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, OLDEST_GLIBC_MINOR - 1, -1)]
    return tags + [f"{name}_{arch}" for m, name in LEGACY_MANYLINUX.items() if m <= minor]


def download_command(dest: Path, requirements: Path, args: argparse.Namespace) -> list[str]:
    """`pip download` of binary wheels for the image's interpreter and platform."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest)]
    command += ["--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", args.python_version, "-r", str(requirements)]
    for tag in platform_tags(args.glibc, args.arch):
        command += ["--platform", tag]
    return command


def prepare(dest: Path, args: argparse.Namespace) -> bool:
    """Fill `dest` with the image's wheels; False when it already held exactly those."""
    wanted = "\n".join([*image_requirements(), ""])
    stamp = f"# python {args.python_version}, glibc {args.glibc}, {args.arch}\n{wanted}"
    requirements = dest / "requirements.txt"
    if requirements.exists() and requirements.read_text() == stamp:
        offline = [
            *download_command(dest, requirements, args),
            "--no-index",
            "--find-links",
            str(dest),
        ]
        if subprocess.run(offline, capture_output=True).returncode == 0:
            return False
    # Start empty, so no wheel of an earlier requirement set is installed by mistake.
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    requirements.write_text(stamp)
    subprocess.run(download_command(dest, requirements, args), check=True)
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.36"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder in the build context, e.g. build/wheels")
    parser.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}")
    parser.add_argument("--glibc", default=here.split()[-1], help="the image's C library: 2.N")
    parser.add_argument("--arch", default=platform.machine())
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fresh = prepare(args.dest, args)
    print(f"{args.dest}: {'downloaded' if fresh else 'already complete'}")


if __name__ == "__main__":
    main()
