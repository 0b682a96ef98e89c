"""The executors by name (`msabench run --executor`): `local`, `process`, `ray`. Each calls
`msabench.execution.base.run_one`, so results never depend on the executor (docs/architecture.md §9);
none imports anything heavy (torch, ray) at import time."""

from __future__ import annotations

from collections.abc import Callable

from msabench.core.registry import Registry
from msabench.execution.base import run_local
from msabench.execution.process import run_process
from msabench.execution.ray_executor import run_ray

EXECUTORS: Registry[Callable] = Registry("executor", listing=None)  # no `msabench executors`
EXECUTORS.add("local", run_local)
EXECUTORS.add("process", run_process)
EXECUTORS.add("ray", run_ray)
