"""The sandbox a submission's kernel runs in: bubblewrap, resource limits, an unprivileged user.

Inside, the kernel sees a read-only system (/usr, /etc, the Python installation and this
virtual environment), the public part of the check library (a copy: neither this repository
nor the hidden checks), the public MNIST files, its own writable scratch directory and a
read-only challenge directory that the grader writes to. It has no network (a new network
namespace with only a loopback that nobody listens on), its own PID namespace (when the
sandbox's first process dies, the kernel removes everything else in it: no process outlives
its grading), its own IPC, UTS and cgroup namespaces, and runs as an unprivileged user outside
the namespace, so even a file the binds expose only by mistake is read as "other".
The grader talks to the kernel over ZeroMQ IPC sockets in the scratch directory.

Without the sandbox (enabled=False) the kernel sees the grader's whole filesystem; with
`drop_privileges`, a grader running as root still starts it as the unprivileged user (setpriv,
no_new_privs): it reads only what "other" may read, writes only its scratch and what the
world may write, and cannot signal the grader. Where bubblewrap cannot run (Gradescope's
containers) this is the isolation left; `unprivileged_problem` says whether it works here.
"""

import contextlib
import functools
import glob
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

# The user the sandbox runs as when the grader is root (nobody): it owns nothing on the host.
# Kernels graded at the same time run as SANDBOX_UID + slot (autograder.slots), so that one
# submission's processes never count against another's process limit.
SANDBOX_UID = int(os.environ.get("AUTOGRADER_SANDBOX_UID", "65534"))
# NVIDIA devices a grading kernel may use; CUDA reserves far more address space than it uses,
# so with a GPU the address-space limit is off unless set.
GPU_DEVICES = sorted(glob.glob("/dev/nvidia*"))
MEMORY_MB = int(os.environ.get("AUTOGRADER_MEMORY_MB", "0" if GPU_DEVICES else "10240"))
# What a graded kernel imports: the student package whole, and of the instructor's only the
# hidden tests' checks (their collect half runs in the kernel). Never the hidden thresholds.
KERNEL_PACKAGES = {"dgmlab": None, "autograder": ("__init__.py", "hidden_checks")}


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel (setrlimit, inherited by everything it starts)."""

    memory_mb: int = MEMORY_MB  # address space of each process; torch alone maps ~3 GB
    processes: int = 256  # threads count too: torch and ipykernel start a few dozen
    file_mb: int = 256  # the largest file the kernel may write
    open_files: int = 1024

    def apply(self, processes: int) -> None:
        """Set the limits in the calling process (a preexec_fn, before bwrap starts)."""
        if self.memory_mb:
            cap = self.memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_mb * 2**20,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def python_roots() -> list[Path]:
    """The directories this interpreter and its packages live in, to bind read-only."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(p for p in roots if p.exists())


def public_library(target: Path) -> Path:
    """Copy what a graded kernel imports into target/ (KERNEL_PACKAGES; no hidden thresholds)."""
    for package, names in KERNEL_PACKAGES.items():
        source = Path(importlib.util.find_spec(package).origin).parent
        shutil.rmtree(target / package, ignore_errors=True)
        if names is None:
            shutil.copytree(source, target / package, ignore=_no_caches)
            continue
        (target / package).mkdir(parents=True)
        for name in names:
            if (source / name).is_dir():
                shutil.copytree(source / name, target / package / name, ignore=_no_caches)
            else:
                shutil.copy2(source / name, target / package / name)
    return target


def _no_caches(_directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__"]


def bwrap_command(
    argv: list[str], binds: list[tuple[str, Path, Path]], env: dict[str, str]
) -> list[str]:
    """The bubblewrap command line that runs `argv` with `binds` (mode, source, destination)."""
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for path in ("/usr", "/etc"):
        command += ["--ro-bind", path, path]
    for link in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(link):
            command += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            command += ["--ro-bind", link, link]
    # Memory-backed: each writable tmpfs is capped; the root, /dev and the rest are read-only.
    command += ["--dev", "/dev", "--proc", "/proc", "--size", str(512 * 2**20), "--tmpfs", "/tmp"]
    command += ["--size", str(64 * 2**20), "--tmpfs", "/dev/shm"]
    for device in GPU_DEVICES:  # untested here: no GPU was lent to this work
        command += ["--dev-bind", device, device]
    for mode, source, destination in binds:
        command += [mode, str(source), str(destination)]
    command += ["--remount-ro", "/dev", "--remount-ro", "/"]
    command += ["--chdir", str(env["HOME"]), "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


# As root, the sandbox runs as SANDBOX_UID, who cannot traverse /root, where the Python
# installation and the data may live: a private mount namespace (root's, before the switch)
# first binds every source onto a staging directory anyone can traverse.
STAGE_SCRIPT = (
    'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; shift; exec "$@"'
)


def staged(binds: list[tuple[str, Path, Path]], stage: Path, uid: int) -> tuple[list[str], list]:
    """The staging prefix of the command line and the binds with staged sources."""
    prefix = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        STAGE_SCRIPT,
        "sh",
    ]
    moved = []
    for index, (mode, source, destination) in enumerate(binds):
        target = stage / str(index)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.touch()
        prefix += [str(source), str(target)]
        moved.append((mode, target, destination))
    return prefix + ["--", *setpriv(uid)], moved


def setpriv(uid: int, *options: str) -> list[str]:
    """The prefix that runs a command as `uid`, its group `uid` and no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *options, "--"]


# Unsandboxed, the kernel's only barrier is its user: no setuid program (su, mount) or file
# capability may raise it again (bubblewrap sets the same flag for its own).
NO_NEW_PRIVS = "--no-new-privs"


@dataclass
class Sandbox:
    """The directories of one sandboxed kernel: `root` must be new; the rest is made in it."""

    root: Path
    library: Path
    data: Path
    limits: Limits = Limits()
    enabled: bool = True
    threads: str = "1"
    uid: int = SANDBOX_UID  # as root: the user the kernel runs as
    cuda_devices: str | None = None  # CUDA_VISIBLE_DEVICES of the kernel; None: all there are
    drop_privileges: bool = False  # unsandboxed, as root: the kernel runs as `uid` all the same

    @property
    def as_user(self) -> bool:
        """Whether the kernel runs as `uid`: the grader is root, and sandboxes or drops."""
        return os.getuid() == 0 and (self.enabled or self.drop_privileges)

    @property
    def scratch(self) -> Path:
        """The kernel's home and working directory, the only place it may write."""
        return self.root / "scratch"

    @property
    def challenge(self) -> Path:
        """Where the grader puts a test's challenge just before the test runs (read-only)."""
        return self.root / "challenge"

    def prepare(self) -> None:
        """Create the directories and hand the scratch directory to the sandbox user."""
        for path in (self.scratch, self.challenge, self.root / "stage"):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.root, self.challenge, self.root / "stage"):
            os.chmod(path, 0o755)
        if self.as_user:
            os.chown(self.scratch, self.uid, self.uid)

    def hand_over(self, path: Path) -> None:
        """Let the sandbox user read a file the grader wrote into the scratch directory."""
        if self.as_user:
            os.chown(path, self.uid, self.uid)

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The kernel's whole environment: nothing of the grader's leaks in."""
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.scratch),
            "USER": "student",
            "LOGNAME": "student",
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(self.library),
            "PYTHONDONTWRITEBYTECODE": "1",
            # figures go into the graded notebook, so the feedback shows the student's plots
            # (as a kernel outside the sandbox draws them, and as nbgrader's feedback would)
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "MPLCONFIGDIR": str(self.scratch / ".matplotlib"),
            "JUPYTER_RUNTIME_DIR": str(self.scratch / ".jupyter"),
            "IPYTHONDIR": str(self.scratch / ".ipython"),
            "DGM_DATA": str(self.data),
            "TMPDIR": "/tmp",
        }
        if self.threads != "0":
            env.update(OMP_NUM_THREADS=self.threads, MKL_NUM_THREADS=self.threads)
        if self.cuda_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.cuda_devices
        return {**env, **extra}

    def binds(self) -> list[tuple[str, Path, Path]]:
        """(mode, source, destination) of everything the kernel sees besides the system."""
        binds = [("--ro-bind", root, root) for root in python_roots()]
        binds += [("--ro-bind", p, p) for p in (self.library, self.data, self.challenge)]
        return binds + [("--bind", self.scratch, self.scratch)]

    def wrap(self, argv: list[str], extra_env: dict[str, str]) -> list[str]:
        """`argv` as the sandbox runs it (or unchanged with its environment, unsandboxed,
        as `uid` if it drops privileges)."""
        env = self.environment(extra_env)
        if not self.enabled:
            plain = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
            return setpriv(self.uid, NO_NEW_PRIVS) + plain if self.as_user else plain
        binds, prefix = self.binds(), []
        if os.getuid() == 0:
            prefix, binds = staged(binds, self.root / "stage", self.uid)
        return prefix + bwrap_command(argv, binds, env)

    def preexec(self) -> None:
        """In the child before exec: the limits (inherited by all the kernel starts)."""
        processes = self.limits.processes
        if os.getuid() != 0:  # the limit counts every process of this user, not only ours
            processes += len(os.listdir("/proc"))
        self.limits.apply(processes)


@functools.cache
def available() -> bool:
    """Whether bubblewrap runs here with every namespace the sandbox needs."""
    if shutil.which("bwrap") is None:
        return False
    root = Path(tempfile.mkdtemp(prefix="sandbox-probe-"))
    try:
        probe = Sandbox(root, library=root / "scratch", data=root / "scratch")
        probe.prepare()
        command = probe.wrap([sys.executable, "-c", "pass"], {})
        result = subprocess.run(command, preexec_fn=probe.preexec, capture_output=True, timeout=60)
        return result.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(root, ignore_errors=True)


# What the unprivileged kernel must manage: start this interpreter and its ipykernel, and list
# the library and data copies it is given.
PROBE = "import os, sys, ipykernel\nfor path in sys.argv[1:]:\n    os.listdir(path)"


def unprivileged_problem(uid: int, paths: list[Path], python: str | None = None) -> str | None:
    """Why an unsandboxed kernel of `python` (default: this interpreter, the kernel's) cannot
    run as `uid` here (None: it can). A Python under /root (pyenv's, say) or copies in a
    directory only root may enter stop it."""
    python = python or sys.executable
    if os.getuid() != 0:
        return "the grader does not run as root, so it cannot start the kernel as another user"
    if shutil.which("setpriv") is None:
        return "setpriv is not installed (expected util-linux's setpriv on the PATH)"
    command = [*setpriv(uid, NO_NEW_PRIVS), "env", "-i", "PATH=/usr/bin:/bin", python]
    command += ["-c", PROBE, *map(str, paths)]
    try:
        done = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the probe as user {uid} did not finish: {exc}"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    read = f" and read {', '.join(str(p) for p in paths)}" if paths else ""
    return (
        f"user {uid} cannot run {python} with ipykernel{read} ({last}); expected a Python "
        "installation and copies that every user may read"
    )


class SandboxedKernelManager(AsyncKernelManager):
    """A Jupyter kernel manager whose kernel runs in a Sandbox, over IPC sockets in its scratch."""

    sandbox: Sandbox | None = None
    kernel_env: dict[str, str] = {}

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The kernelspec's command (this interpreter's ipykernel) inside the sandbox."""
        assert self.sandbox is not None
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]
        return self.sandbox.wrap(argv, self.kernel_env)

    def write_connection_file(self, **kwargs) -> None:
        """Write the connection file where the sandbox user can read it."""
        super().write_connection_file(**kwargs)
        assert self.sandbox is not None
        self.sandbox.hand_over(Path(self.connection_file))

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        """Start the kernel with the sandbox's limits (jupyter_client gives it its own session)."""
        assert self.sandbox is not None
        kw.pop("env", None)  # the sandbox sets the whole environment itself
        log = open(self.sandbox.root / "kernel.log", "ab")  # noqa: SIM115 (the kernel's, for good)
        kw.update(stdout=log, stderr=log)
        kw["preexec_fn"] = self.sandbox.preexec
        if self.sandbox.as_user and not self.sandbox.enabled:
            kw["cwd"] = str(self.sandbox.scratch)  # bubblewrap's --chdir; its own to write in
        await super()._async_launch_kernel(kernel_cmd, **kw)
        self.sandbox_process = self.provisioner.process  # kept past jupyter_client's cleanup

    async def _async_interrupt_kernel(self) -> None:
        """Interrupt by message: a SIGINT to the session would reach bubblewrap, not the kernel."""
        if self.has_kernel:
            self._connect_control_socket()
            self.session.send(
                self._control_socket, self.session.msg("interrupt_request", content={})
            )

    interrupt_kernel = run_sync(_async_interrupt_kernel)

    def kill_sandbox(self) -> int | None:
        """SIGKILL the sandbox's session (its PID namespace goes with it); its exit status."""
        process = getattr(self, "sandbox_process", None)
        if process is None:
            return None
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)  # jupyter_client made it a session leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        return process.returncode


def kernel_manager(sandbox: Sandbox, env: dict[str, str]) -> SandboxedKernelManager:
    """A manager for one kernel in `sandbox` with IPC sockets and connection file in its scratch."""
    manager = SandboxedKernelManager(transport="ipc", ip=str(sandbox.scratch / "kernel"))
    manager.connection_file = str(sandbox.scratch / "kernel.json")
    manager.sandbox = sandbox
    manager.kernel_env = env
    return manager
