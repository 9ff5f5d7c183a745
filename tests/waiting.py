"""Polling for the Python tests that drive whole deployments (tests/cluster, tests/k8s)."""

import time


def wait_for(what, check, timeout=120, every=0.25):
    """check()'s first truthy value, asked every `every` seconds; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
