"""Faults on demand, for the tests: stop or break a program at a chosen place, every time.

A test sets ``DCGAN_CUDA_FAULT=ACTION@POINT:N``; the N-th time the program passes POINT
(counted from 1, from the moment ``arm()`` read the variable), it does ACTION to itself.
A timer cannot do this: a kill "after 0.3 s" lands somewhere else on every machine and
every run, so a test built on one covers a boundary only now and then.

POINT is one of
  ``iteration``          an iteration of training has run and its metrics row is written
  ``save``               a training checkpoint (checkpoint.safetensors) has been written
  ``write:NAME``         a file named NAME is being replaced: its new content is complete in
                         the temporary file, which has not yet been renamed over NAME
  ``decode``             the folder loader has decoded one image (in a worker thread)

ACTION is one of
  ``kill``   SIGKILL to itself: the process ends on the spot, as after ``kill -9`` or a
             power cut (nothing of Python runs afterwards)
  ``term``   SIGTERM to itself, as a job scheduler sends before it kills
  ``int``    SIGINT to itself: one Ctrl-C
  ``int2``   SIGINT twice in a row: Ctrl-C pressed again before the first took effect
  ``full``   an OSError "No space left on device" raised at that point
  ``eio``    an OSError "Input/output error" raised at that point (a write that failed)

Unset, which is always the case outside the tests, ``reached`` costs one comparison.
"""
from __future__ import annotations

import errno
import os
import signal
import threading

ENVIRONMENT = "DCGAN_CUDA_FAULT"
POINTS = ("iteration", "save", "write:", "decode")
ACTIONS = ("kill", "term", "int", "int2", "full", "eio")


class FaultSpecError(ValueError):
    """DCGAN_CUDA_FAULT does not name an action, a point and a count."""


_lock = threading.Lock()     # decode points are passed by several threads at once
_plan = None                 # (action, point, n) while armed
_arrivals = 0


def parse(spec):
    """'kill@write:checkpoint.safetensors:2' -> ('kill', 'write:checkpoint.safetensors', 2)."""
    action, at, rest = spec.partition("@")
    point, colon, count = rest.rpartition(":")
    well_formed = at and colon and action in ACTIONS and count.isdigit() and int(count) >= 1
    if not well_formed or not any(point.startswith(p) and len(point) > len(p) if p.endswith(":") else point == p
                                  for p in POINTS):
        raise FaultSpecError(
            f"{ENVIRONMENT}={spec!r}: expected ACTION@POINT:N with ACTION one of {', '.join(ACTIONS)}, "
            f"POINT one of iteration, save, write:FILE_NAME, decode, and N >= 1 (it is a test hook: "
            "leave it unset to train normally)")
    return action, point, int(count)


def arm(environ=None):
    """Read DCGAN_CUDA_FAULT (if set) and start counting from zero."""
    global _plan, _arrivals
    spec = (os.environ if environ is None else environ).get(ENVIRONMENT)
    with _lock:
        _plan = parse(spec) if spec else None
        _arrivals = 0


def disarm():
    global _plan
    with _lock:
        _plan = None


def reached(point):
    """Called by the program at each POINT it passes; acts on the chosen arrival."""
    global _arrivals
    if _plan is None or _plan[1] != point:
        return
    with _lock:
        if _plan is None or _plan[1] != point:
            return
        _arrivals += 1
        action = _plan[0] if _arrivals == _plan[2] else None
    if action is not None:
        _act(action)


def _send(signum):
    # A function of its own: entering it gives Python the chance to run the handler of a
    # signal sent just before, so two SIGINTs in a row reach the handler as two.
    os.kill(os.getpid(), signum)


def _act(action):
    if action == "kill":
        _send(signal.SIGKILL)
    elif action == "term":
        _send(signal.SIGTERM)
    elif action == "int":
        _send(signal.SIGINT)
    elif action == "int2":
        _send(signal.SIGINT)
        _send(signal.SIGINT)
    else:
        code = errno.ENOSPC if action == "full" else errno.EIO
        raise OSError(code, os.strerror(code))
