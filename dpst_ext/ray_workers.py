"""Ray for ``dpst batch`` and ``dpst video``: starting (or joining) Ray, sizing the workers, and running jobs
on a pool of worker actors that Ray restarts and retries.

* ``require_ray(what, extra)``: a one-line ImportError naming the extra to install when Ray (or tqdm) is not.
* ``ray_session(address, verbose)``: an embedded local Ray with this machine's cores, or the cluster at
  ``address``; shut down at the end if it was started here, left running if the process already had one.
* ``run_on_actors(actor, workers, jobs, on_result, ...)``: each job on whichever worker actor is free
  (ray.wait over their calls); a worker that dies (a crash, the OOM killer, a lost node) is restarted and
  its call retried TASK_RETRIES times, then reported as {"ok": False, "reason": ...}.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

__all__ = ["TASK_RETRIES", "require_ray", "cores", "plan_workers", "start_ray", "ray_session", "run_on_actors",
           "one_line"]

TASK_RETRIES = 2          # a job whose worker died is tried this many more times


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def require_ray(what: str, extra: str) -> None:
    """ImportError (one line) when Ray or tqdm is missing: ``what`` runs on Ray, install ``dpst_ext[extra]``."""
    try:
        import ray  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as e:
        raise ImportError(f'{what} runs on Ray ({e.name} is not installed): pip install "dpst_ext[{extra}]" '
                          '(or pip install "ray>=2.9" "tqdm>=4.60")') from None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_workers(n_jobs: int, cpus: int, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(workers, threads per worker) with workers x threads <= cpus: by default one thread per worker and
    as many workers as cores (fewer jobs than cores: the spare cores become threads)."""
    if workers is None and threads is None:
        threads = max(1, cpus // n_jobs) if n_jobs < cpus else 1
    if workers is None:
        workers = max(1, min(n_jobs, cpus // threads))
    elif threads is None:
        threads = max(1, cpus // workers)
    if workers * threads > cpus:
        raise ValueError(f"workers x threads = {workers} x {threads} = {workers * threads} CPUs, more than the "
                         f"{cpus} there are: lower --workers or --threads")
    return workers, threads


def start_ray(address: str | None, cpus: int, verbose: bool) -> bool:
    """Connect to ``address`` or start an embedded local Ray; False when this process already had one (a
    notebook's, a test's): it is used as it is and left running."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    kwargs = dict(include_dashboard=False, log_to_driver=verbose, logging_level="ERROR")
    if address is None:
        # Ray runs its workers at nice 15; the embedded Ray's workers are this command's own work, as a
        # `dpst transfer` process is (RAY_worker_niceness in the environment still decides).
        os.environ.setdefault("RAY_worker_niceness", "0")
        # The workers import the same dpst_ext as this process (also from a source checkout).
        here = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        kwargs.update(num_cpus=cpus, runtime_env={"env_vars": {"PYTHONPATH": path}})
    # ray.init replaces the SIGTERM handler by sys.exit; the command's own (SIGTERM as Ctrl-C: keep what is
    # done) is put back.
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGTERM) if main else None
    ray.init(address=address, **kwargs)
    if main and old is not None:
        signal.signal(signal.SIGTERM, old)
    return True


@contextlib.contextmanager
def ray_session(address: str | None, verbose: bool = False):
    """Ray for the block (start_ray with this machine's cores); shut down afterwards if started here."""
    import ray

    started = start_ray(address, cores(), verbose)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def run_on_actors(actor_class, workers: int, jobs, on_result, args=(), **actor_options) -> None:
    """Each job on a free worker, ``workers`` actors of ``actor_class`` (built with ``args``; a class with a
    ``run(job) -> dict`` method that returns {"ok": False, "reason": ...} for its own errors) with Ray's
    ``actor_options`` (num_cpus, memory, ...); on_result(job, result) as they end, in the order they end.
    A worker that dies is restarted and its call retried (TASK_RETRIES); then the job's result is
    {"ok": False, "reason": "its worker died ..."}. The actors are killed at the end (also on Ctrl-C)."""
    import ray

    actor = ray.remote(actor_class).options(max_restarts=-1, max_task_retries=TASK_RETRIES, **actor_options)
    idle = [actor.remote(*args) for _ in range(workers)]
    todo, pending = iter(jobs), {}
    try:
        while True:
            while idle and (job := next(todo, None)) is not None:
                a = idle.pop()
                pending[a.run.remote(job)] = (a, job)
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            a, job = pending.pop(ready[0])
            idle.append(a)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                result = {"ok": False, "reason": f"its worker died ({TASK_RETRIES + 1} tries): {one_line(e)}"}
            on_result(job, result)
    finally:
        for a in idle + [a for a, _ in pending.values()]:
            ray.kill(a)
