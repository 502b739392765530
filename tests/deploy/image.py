"""The container image built and run with podman, with the commands the README documents.

The base image is made here rather than pulled (no registry is reachable): a minimal
Debian bookworm from this machine's own apt sources, with the bookworm Python 3.11 the
official `python:3.11-slim-bookworm` also has, imported as `localhost/tabserve-base`.
Podman reads deploy/podman/containers.conf (runc, cgroupfs, limits the host allows).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.support import REPO, wait_for

TOOLS = ("podman", "runc", "mmdebstrap")
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"
BASE_IMAGE = "localhost/tabserve-base:bookworm"
IMAGE = "localhost/tabserve:0.1.0"
# The builder stage, tagged so the next build finds its layers (the cache) and so the
# one it supersedes can be removed: each build leaves about 3 GB of builder and 2 GB of
# image behind otherwise, and a machine kept across runs fills its disk.
BUILDER = "localhost/tabserve-builder:cache"
WHEELS = "build/wheels"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Bookworm's Python and C library, which the wheels are chosen for (downloaded while the
# base is still being made; a test checks the base really has them).
BASE_PYTHON = "3.11"
BASE_GLIBC = "2.36"
# What the official image sets and the Dockerfile relies on: `ENV PATH=/opt/venv/bin:$PATH`
# needs a PATH to extend (an imported tarball has no environment at all).
BASE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
# Like Debian's slim images (the official image's base): no manuals, docs or translations.
SLIM = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*"]

# The README's commands; the tests run these, with only the name and host port changed.
BUILD = [
    *["podman", "build", "--format", "docker", "--network", "none"],
    *["--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "--build-arg", f"WHEELS={WHEELS}"],
    *["-t", IMAGE, "."],
]
# As the Kubernetes Deployment runs it: read-only root with only an in-memory /tmp
# writable (podman would add more tmpfs mounts unless told not to), no capabilities,
# and the ConfigMap's two workers summing their metrics under /tmp.
RUN = [
    *["podman", "run", "--rm", "--name", "tabserve"],
    *["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777"],
    *["--cap-drop", "ALL", "--security-opt", "no-new-privileges"],
    *["-e", "TABSERVE_WORKERS=2", "-e", "PROMETHEUS_MULTIPROC_DIR=/tmp/metrics"],
    *["-p", "127.0.0.1:8000:8000", IMAGE],
]


def skip_reason() -> str | None:
    """Why the image tests cannot run here, or None when they can."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (.ci/run installs podman, runc, mmdebstrap)"
    if os.geteuid() != 0:
        return "podman builds and runs the image as root here (no rootless setup)"
    if not SOURCES.exists():
        return f"no {SOURCES} to build the Debian base image from"
    return None


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run podman with the repository's containers.conf; its stdout."""
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {shlex.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def run_logged(command: list[str], log: Path, timeout: float) -> None:
    """Run `command` from the repository root, timed in `log`; fail with the log's end."""
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(command)}\n".encode())
        out.flush()
        code = subprocess.run(
            command,
            cwd=REPO,
            env=podman_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        ).returncode
        out.write(f"# exit {code} after {time.monotonic() - started:.0f} s\n".encode())
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{shlex.join(command)} exited {code}:\n{tail}")


def base_commands(tarball: Path) -> list[list[str]]:
    """mmdebstrap from this machine's sources (no mirror named here), then podman import."""
    include = "python3,python3-venv,python-is-python3,ca-certificates"
    bootstrap = ["mmdebstrap", "--variant=minbase", f"--include={include}"]
    bootstrap += [f"--dpkgopt=path-exclude={path}" for path in SLIM]
    bootstrap += ["--dpkgopt=path-include=/usr/share/doc/*/copyright"]
    # No fsync per unpacked file (the official Debian images set it too): minutes saved.
    bootstrap += ["--dpkgopt=force-unsafe-io"]
    bootstrap += ["bookworm", str(tarball), str(SOURCES)]
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    return [bootstrap, ["podman", "import", *changes, str(tarball), BASE_IMAGE]]


def ensure_base(workdir: Path, log: Path) -> None:
    """Make the base image unless podman already has it (it is kept between runs)."""
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=podman_env()).returncode == 0:
        return
    for command in base_commands(workdir / "base.tar"):
        run_logged(command, log, timeout=900)
    (workdir / "base.tar").unlink()


def base_platform() -> tuple[str, str]:
    """The base image's Python `major.minor` and glibc `2.N`, for choosing wheels."""
    code = "import os, sys; print(*sys.version_info[:2], os.confstr('CS_GNU_LIBC_VERSION'))"
    major, minor, _glibc, glibc = podman("run", "--rm", BASE_IMAGE, "python3", "-c", code).split()
    return f"{major}.{minor}", glibc


def wheelhouse_command(python: str) -> list[str]:
    """The README's wheel download for the base image's interpreter and C library."""
    script = "deploy/podman/wheelhouse.py"
    return [python, script, WHEELS, "--python-version", BASE_PYTHON, "--glibc", BASE_GLIBC]


@dataclass(frozen=True)
class Image:
    """A built image: its id (runs use it, so a parallel build's tag cannot interfere)."""

    id: str
    size: int
    history: str
    superseded: tuple[str, ...] = ()
    """Ids the image and builder tags named before this build, when it moved them."""


def build(log: Path, python: str) -> Image:
    """Base, wheels, then the README's `podman build` of the repository's own Dockerfile."""
    # The base and the wheels do not depend on each other: make them at the same time.
    with ThreadPoolExecutor(max_workers=1) as pool:
        base = pool.submit(ensure_base, log.parent, log.with_name("base.log"))
        run_logged(wheelhouse_command(python), log, timeout=900)
        base.result()
    iidfile = log.parent / "image.id"
    superseded = {tag: image_id(tag) for tag in (IMAGE, BUILDER)}
    run_logged([*BUILD[:2], "--iidfile", str(iidfile), *BUILD[2:]], log, timeout=1200)
    image = iidfile.read_text().strip()
    # Every layer is cached now, so tagging the builder stage takes seconds.
    options = BUILD[2 : BUILD.index("-t")]
    run_logged([*BUILD[:2], *options, "--target", "builder", "-t", BUILDER, "."], log, 600)
    moved = remove_superseded(superseded, log)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image))
    return Image(image, size, podman("history", image), moved)


def image_id(reference: str) -> str | None:
    """The id `reference` names now, or None when podman has no such image."""
    found = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", reference],
        env=podman_env(),
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() if found.returncode == 0 else None


def remove_superseded(before: dict[str, str | None], log: Path) -> tuple[str, ...]:
    """Remove the images the tags named before this build, when the build moved them.

    Only those: other images on the machine are not this test's to remove. An image
    still in use (a container of another run) stays, and the log says so.
    """
    moved = tuple(old for tag, old in before.items() if old is not None and old != image_id(tag))
    for old in moved:
        done = subprocess.run(
            ["podman", "rmi", old], env=podman_env(), capture_output=True, text=True
        )
        with log.open("a") as out:
            out.write(f"# superseded image {old[:12]}: rmi exited {done.returncode}\n")
            out.write(done.stderr)
    return moved


@dataclass
class Container:
    """A running `podman run` of the image, in the foreground as a user would start it."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """`podman exec` in the container (as its own user unless `user` is given)."""
        who = ["--user", user] if user else []
        return subprocess.run(
            ["podman", "exec", *who, self.name, *command],
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> int:
        """`podman stop` (SIGTERM, then SIGKILL after 30 s); the container's exit code."""
        podman("stop", "--time", "30", self.name, timeout=90)
        return self.process.wait(timeout=60)


def run_command(image: Image, name: str, port: int, *extra: str) -> list[str]:
    """The README's `podman run`, for `image` under `name` on loopback port `port`."""
    command = [a.replace("127.0.0.1:8000:", f"127.0.0.1:{port}:") for a in RUN[:-1]]
    command[command.index("tabserve")] = name
    return [*command, *extra, image.id]


def start(image: Image, name: str, port: int, log: Path, *extra: str) -> Container:
    """Start a container and wait until its readiness probe answers 200."""
    process = subprocess.Popen(
        run_command(image, name, port, *extra),
        env=podman_env(),
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    container = Container(name, f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(f"{container.url}/v2/health/ready", process, log, seconds=120)
    except BaseException:
        remove(container)
        raise
    return container


def remove(container: Container) -> None:
    """Stop and remove a container whatever its state (teardown)."""
    if container.process.poll() is None:
        podman("rm", "--force", "--time", "5", container.name, timeout=90, check=False)
        container.process.wait(timeout=60)
