"""The executors by name (`msabench run --executor`): `local`, `process`, `ray`, `slurm`. Each calls
`msabench.execution.base.run_one`, so results never depend on the executor (docs/architecture.md §9);
none imports anything heavy (torch, ray, submitit) at import time."""

from __future__ import annotations

from collections.abc import Callable

from msabench.core.registry import Registry
from msabench.execution.base import run_local
from msabench.execution.process import run_process
from msabench.execution.ray_executor import run_ray
from msabench.execution.slurm_executor import run_slurm

EXECUTORS: Registry[Callable] = Registry("executor", listing=None)  # no `msabench executors`
EXECUTORS.add("local", run_local)
EXECUTORS.add("process", run_process)
EXECUTORS.add("ray", run_ray)
EXECUTORS.add("slurm", run_slurm)
