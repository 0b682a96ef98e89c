"""A real one-node Slurm cluster for the tests of the `slurm` executor: munged, slurmctld and slurmd
(Debian's `slurm-wlm` and `munge`) started in the foreground with a config, key, sockets, state and
logs in a temporary folder, on free ports, torn down afterwards. `SlurmCluster.start()` raises
`ClusterUnavailable` with the reason when it cannot come up (packages missing, not root, a daemon
that dies), so the tests skip saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo", "squeue", "scontrol", "scancel")
NODE = "localhost"
PARTITION = "debug"
START_TIMEOUT = 60.0


class ClusterUnavailable(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


class SlurmCluster:
    def __init__(self, folder: Path, cpus: int = 2):
        self.folder = Path(folder)
        self.cpus = cpus
        self.conf = self.folder / "slurm.conf"
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def _write_config(self) -> None:
        state, spool = self.folder / "state", self.folder / "spool"
        for d in (state, spool):
            d.mkdir(mode=0o700)
        f = self.folder
        memory_mb = 2000
        # cred_expire: a requeued job may start again only after it (default 120 s); KillWait: the
        # seconds between SIGTERM and SIGKILL of a cancelled job (default 30 s); sched_interval: how
        # often pending jobs are looked at besides on events (default 60 s; a requeued job waits for it)
        self.conf.write_text(f"""\
ClusterName=msabenchtest
SlurmctldHost={NODE}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire=5
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/slurmctld.log
SlurmdLogFile={f}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=2
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MailProg=/bin/true
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.folder / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        log.close()

    def _wait(self, what: str, ready, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    out = (self.folder / f"{name}.out").read_text(errors="replace")[-1500:]
                    raise ClusterUnavailable(f"{name} exited ({proc.returncode}) while waiting for {what}: "
                                             f"{out.strip() or self._log(name)}")
            if ready():
                return
            time.sleep(0.3)
        raise ClusterUnavailable(f"timed out after {timeout:g}s waiting for {what}; slurmctld log: "
                                 f"{self._log('slurmctld')}; slurmd log: {self._log('slurmd')}")

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True,
                             timeout=20)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def start(self) -> SlurmCluster:
        missing = [d for d in DAEMONS if _find(d) is None]
        if missing:
            raise ClusterUnavailable(f"{', '.join(missing)} not found: apt-get install slurm-wlm munge")
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmd needs root (it runs jobs as their user)")
        try:
            munge_dir = self.munge_socket.parent
            munge_dir.mkdir(mode=0o700)
            key = munge_dir / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
            self._spawn("munged", [_find("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
                                   f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
                                   f"--seed-file={munge_dir / 'munged.seed'}",
                                   f"--log-file={self.folder / 'munged.log'}"])
            self._wait("munged's socket", self.munge_socket.exists, 20)
            self._write_config()
            self._spawn("slurmctld", [_find("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait("slurmctld", lambda: subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True,
                                                          timeout=20).returncode == 0)
            self._spawn("slurmd", [_find("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
            self._wait("the node to be idle (sinfo)", self._node_idle)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):  # no job outlives the cluster
                subprocess.run(["scancel", "--full", "--quiet", "-u", "root"], env=self.env, timeout=10)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
