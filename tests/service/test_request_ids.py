"""Generated request ids: 32 hex digits, unique, and a new prefix in each forked worker."""

from __future__ import annotations

import multiprocessing
import re

from tabserve.service.api.request_ids import RequestIds, new_request_id


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_request_id() for _ in range(3)])


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_two_generators_do_not_share_a_prefix() -> None:
    assert RequestIds().next()[:16] != RequestIds().next()[:16]


def test_a_forked_child_draws_its_own_prefix() -> None:
    parent = new_request_id()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_ids, args=(queue,))
    child.start()
    ids = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert {i[:16] for i in ids} != {parent[:16]}
    assert len({i[:16] for i in ids}) == 1
