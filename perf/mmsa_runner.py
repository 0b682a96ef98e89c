"""Run MMSA 2.2.1 with the benchmark's patches: executed by the MMSA venv's python, never by msabench.

    <mmsa-python> perf/mmsa_runner.py --mode epoch|sweep --models tfn,lmf --data data.pkl --seeds 1,2
        --epochs 3 --threads 1 --workdir DIR --json OUT.json

`sweep`: per model, `MMSA.run.MMSA_run` (MMSA's normal path: config, per seed setup_seed, data
loading, training, best-valid checkpoint, test) over the seeds, as MMSA's CLI runs them; the caller
starts one process per model. `epoch`: the same for one seed and every model in this one process,
with MMSA's own per-epoch evaluation of valid and test switched on (`do_train(return_epoch_results=
True)`, M-SENA's mode) and every epoch's wall and CPU time recorded: from `do_train`'s start to the
first epoch's TEST log line, then between successive TEST lines.

Patches, all applied in this process at run time (MMSA's files are not changed):
1. `torch.cuda.set_device` does nothing when no GPU is used: MMSA_run calls it with its device, the
   CPU here, which torch refuses.
2. MulT's trainer builds `ReduceLROnPlateau(..., verbose=True)`; torch 2.13 has no `verbose`, so the
   trainer module's `ReduceLROnPlateau` is replaced by one that drops that argument.
3. A fixed number of epochs: MMSA trains until early stopping with no cap, so `early_stop` is set to
   epochs + 1 (never reached) and the training loader ends the run when iterated an (epochs + 1)-th
   time; `do_train` returns there, after the last epoch's validation and checkpoint. The test pass on
   the best-valid checkpoint follows as usual.
4. `num_workers=0` (an MMSA_run argument: no loader processes) and `torch.set_num_threads(threads)`
   (0: torch's default, one thread per core).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time

import torch


class EpochsDone(Exception):
    """The training loader was asked for one epoch more than the benchmark trains."""


class CappedLoader:
    """MMSA's training DataLoader, ending the run at the start of epoch `epochs + 1`."""

    def __init__(self, loader, epochs: int):
        self.loader, self.epochs, self.passes = loader, epochs, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        if self.passes > self.epochs:
            raise EpochsDone
        return iter(self.loader)


def now() -> tuple[float, float]:
    """(wall, CPU) seconds: the CPU time of this process tells compute apart from a busy machine's waits."""
    return time.perf_counter(), time.process_time()


class TestLineClock(logging.Handler):
    """now() at every "TEST-" log line of MMSA (its per-epoch test evaluation)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times: list[tuple[float, float]] = []

    def emit(self, record):
        if record.getMessage().startswith("TEST-"):
            self.times.append(now())


def patch(epochs: int, per_epoch_test: bool, train_started: list) -> None:
    import MMSA.run as mmsa_run
    from MMSA.trains import ATIO

    # the package re-exports the class under the module's name, so the module comes from importlib
    mult_trainer = importlib.import_module("MMSA.trains.singleTask.MULT")

    if not torch.cuda.is_available():
        torch.cuda.set_device = lambda device: None  # patch 1

    scheduler_cls = mult_trainer.ReduceLROnPlateau

    def plateau_without_verbose(*args, verbose=None, **kwargs):  # patch 2
        return scheduler_cls(*args, **kwargs)

    mult_trainer.ReduceLROnPlateau = plateau_without_verbose

    load = mmsa_run.MMDataLoader

    def capped_loaders(args, num_workers):  # patch 3
        loaders = load(args, num_workers)
        loaders["train"] = CappedLoader(loaders["train"], epochs)
        return loaders

    mmsa_run.MMDataLoader = capped_loaders
    get_train = ATIO.getTrain

    def trainer_for(self, args):
        trainer = get_train(self, args)
        do_train = trainer.do_train

        def fixed_epochs(model, dataloader, return_epoch_results=False):
            train_started.append(now())
            try:
                do_train(model, dataloader, return_epoch_results=return_epoch_results or per_epoch_test)
            except EpochsDone:
                pass
            return None

        trainer.do_train = fixed_epochs
        return trainer

    ATIO.getTrain = trainer_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("epoch", "sweep"), required=True)
    ap.add_argument("--models", required=True, help="MMSA model names, comma-separated: tfn,lmf,lf_dnn,mult")
    ap.add_argument("--data", required=True, help="an MMSA-layout pickle (the synthetic suite's data.pkl)")
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    train_started: list = []
    patch(a.epochs, a.mode == "epoch", train_started)
    import MMSA.run as mmsa_run

    results: list[dict] = []
    run_one = mmsa_run._run

    def recorded(*args, **kwargs):
        out = run_one(*args, **kwargs)
        results.append({k: float(v) for k, v in out.items()})
        return out

    mmsa_run._run = recorded
    clock = TestLineClock()
    logging.getLogger("MMSA").addHandler(clock)
    out = {"threads": torch.get_num_threads(), "models": {}}
    for model in a.models.split(","):
        started = time.perf_counter()
        results.clear(), clock.times.clear(), train_started.clear()
        mmsa_run.MMSA_run(
            model, "mosi", config={"early_stop": a.epochs + 1}, seeds=[int(s) for s in a.seeds.split(",")],
            custom_feature=a.data, gpu_ids=[], num_workers=0, verbose_level=0,
            model_save_dir=f"{a.workdir}/models", res_save_dir=f"{a.workdir}/results", log_dir=f"{a.workdir}/logs")
        got = {"test": list(results), "seconds": round(time.perf_counter() - started, 3)}
        if a.mode == "epoch":
            marks = train_started[:1] + clock.times[:a.epochs]
            got["epoch_seconds"] = [round(b[0] - e[0], 4) for e, b in zip(marks, marks[1:])]
            got["epoch_cpu_seconds"] = [round(b[1] - e[1], 4) for e, b in zip(marks, marks[1:])]
        out["models"][model] = got
    with open(a.json, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
