"""The worker processes the validation grids share: single-threaded, started fresh ("spawn")."""

import concurrent.futures as cf
import multiprocessing as mp

import torch


def _single_thread() -> None:
    torch.set_num_threads(1)  # two single-threaded processes use 2 cores better than one process with 2 threads


def worker_pool(processes: int = 2) -> cf.ProcessPoolExecutor:
    """A pool of ``processes`` single-threaded worker processes (use it as a context manager)."""
    return cf.ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"), initializer=_single_thread)
