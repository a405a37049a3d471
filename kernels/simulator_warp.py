"""Warp-level primitives for Numba's CUDA simulator: shuffles, votes and syncwarp.

Terms (kernels/README.md has the glossary): a **warp** is 32 threads of one block that the
GPU runs in lock step; thread t of a block (t = threadIdx.x + blockDim.x * (threadIdx.y +
blockDim.y * threadIdx.z), its linear index) is **lane** t % 32 of warp t // 32. A **warp
primitive** lets the lanes of one warp exchange registers without shared memory:

    cuda.shfl_sync(mask, v, src)        each lane gets v of lane src % 32
    cuda.shfl_up_sync(mask, v, d)       ... of lane - d    (own v if lane - d < 0)
    cuda.shfl_down_sync(mask, v, d)     ... of lane + d    (own v if lane + d > 31)
    cuda.shfl_xor_sync(mask, v, m)      ... of lane ^ m    (own v if lane ^ m > 31)
    cuda.ballot_sync(mask, p)           bit k set where lane k of the mask has p true (int32)
    cuda.all_sync / any_sync / eq_sync  p true for all / any / all-or-none of the mask
    cuda.match_any_sync(mask, v)        the lanes of the mask whose v equals this lane's
    cuda.match_all_sync(mask, v)        (mask, True) if every lane of the mask has this v, else (0, False)
    cuda.syncwarp(mask)                 the lanes of the mask wait for each other
    cuda.activemask()                   the lanes of the warp that have not exited (uint32)
    cuda.lanemask_lt()                  the lanes below this one (uint32)

The ``mask`` (bit k = lane k) names the lanes that take part: every lane it names must
reach the call, and only they exchange. Numba's simulator has none of these (numba-cuda
0.30.4): it runs every GPU thread as an OS thread and implements ``syncthreads`` as a
barrier over the whole block. This module adds them the same way, as a meeting of the
lanes a mask names: each lane deposits its value and waits until every lane of the mask
has deposited one; then every lane picks up its result, computed once from all of them.

What the GPU defines, the simulator does too (PTX ISA, ``shfl.sync`` and ``vote.sync``):
a source lane out of range gives the caller its own value. Where the GPU leaves the
result undefined, the simulator chooses something deterministic or stops:

* reading a lane outside the mask (or past the end of a partial last warp): the GPU
  returns an undefined value; here the caller gets its own value, as for a lane out of
  range, so code that depends on it computes a wrong answer here rather than a right one
  by luck;
* a lane that calls with a mask that does not name itself, lanes of one meeting that
  called different primitives, and a meeting that can never complete (a lane the mask
  names has exited, waits at ``syncthreads``, or waits at another meeting that cannot
  complete either): a RuntimeError that says which lane and why, instead of a hang.

Lanes past the end of a block whose size is not a multiple of 32 do not exist: a full
mask names only the lanes that do. ``activemask`` is the lanes that have not exited,
once every other lane of the warp has run as far as it can (to its exit or to a wait):
so lanes that left early by ``return`` are not in it, as on the GPU. The simulator has
no notion of which lanes a branch has split off: inside a divergent branch whose other
lanes go on to wait somewhere, the GPU's answer is smaller. Meetings are matched by mask, not by source line: on
compute capability 7.0 and later, lanes may meet at different calls of the same kind.

Installed by kernels/jit.py when the simulator is on (install()); without the simulator
this module does nothing, and the GPU uses its own instructions.
"""
from __future__ import annotations

import threading

import numpy as np

WARP_SIZE = 32
FULL_MASK = 0xFFFFFFFF
# How often (seconds) a lane that waits at a meeting checks whether the meeting can still
# complete. Only how soon a deadlock is reported depends on it, never a result.
POLL_SECONDS = 0.05

_installed = False
_registry_lock = threading.Lock()   # creates each block's warp state once


class _LaneStopped(RuntimeError):
    """Raised in a lane that waits for lanes of a block that has already failed: the lane
    ends quietly, so that the simulator reports the error that stopped the block. (The
    access profiler's threads keep it, with the words it uses for such echoes.)"""

    def __init__(self, message="another thread of the block failed"):
        super().__init__(message)


class _Meeting:
    """One meeting of the lanes named by ``mask`` at a primitive ``kind``."""

    def __init__(self, mask, kind):
        self.mask, self.kind = mask, kind
        self.arguments = {}    # lane -> what it brought
        self.results = None    # lane -> what it takes away, once everyone has arrived


class _BlockWarps:
    """The warp state of one simulated block: its meetings, who waits where, one condition."""

    def __init__(self, threads_in_block):
        self.threads_in_block = threads_in_block
        self.condition = threading.Condition()
        self.pending = {}      # (warp, mask) -> _Meeting not yet complete
        self.waiting = {}      # linear thread index -> _Meeting it waits at
        self.roster = {}       # linear thread index -> its simulator thread, once created
        self.exited = set()    # linear thread indices whose kernel function has returned
        self.at_activemask = {}   # linear thread index inside activemask() -> its answer, once known


def _block_warps(manager):
    state = getattr(manager, "_warps", None)
    if state is None:
        with _registry_lock:
            state = getattr(manager, "_warps", None)
            if state is None:
                state = manager._warps = _BlockWarps(int(np.prod(manager._block_dim)))
    return state


def lanes_in_warp(threads_in_block, warp):
    """Mask of the lanes that exist in ``warp`` (a partial last warp has fewer than 32)."""
    count = min(WARP_SIZE, threads_in_block - warp * WARP_SIZE)
    return (1 << count) - 1 if count > 0 else 0


def _lanes(mask):
    return [lane for lane in range(WARP_SIZE) if mask >> lane & 1]


# ------------------------------------------------------------- what each primitive computes
def _shuffle_source(mode, lane, b):
    """The lane whose value ``lane`` reads, or None for out of range (PTX shfl.sync with
    Numba's clamp values: up uses c = 0, the others c = 0x1f, no sub-warp segments)."""
    b = int(b) & 0xFFFFFFFF
    if mode == "up":
        source = lane - b
        return source if source >= 0 else None
    if mode == "down":
        source = lane + b
    elif mode == "xor":
        source = lane ^ b
    else:                      # "idx": only the low five bits of the source lane count
        source = b & (WARP_SIZE - 1)
    return source if source < WARP_SIZE else None


def _shuffle(mode):
    def results(meeting):
        out = {}
        for lane, (value, b) in meeting.arguments.items():
            source = _shuffle_source(mode, lane, b)
            # Out of range: defined as the caller's own value. Outside the mask: undefined
            # on the GPU; the caller's own value here too (see the module docstring).
            out[lane] = meeting.arguments[source][0] if source in meeting.arguments else value
        return out
    return results


def _as_int32(bits):
    return np.int32(bits - (1 << 32) if bits >= 1 << 31 else bits)


def _ballot_bits(meeting):
    return sum(1 << lane for lane, predicate in meeting.arguments.items() if predicate)


def _ballot(meeting):
    bits = _as_int32(_ballot_bits(meeting))
    return dict.fromkeys(meeting.arguments, bits)


def _vote(test):
    def results(meeting):
        answer = bool(test([bool(p) for p in meeting.arguments.values()]))
        return dict.fromkeys(meeting.arguments, answer)
    return results


def _match_any(meeting):
    out = {}
    for lane, value in meeting.arguments.items():
        same = sum(1 << other for other, v in meeting.arguments.items() if v == value)
        out[lane] = _as_int32(same)
    return out


def _match_all(meeting):
    values = list(meeting.arguments.values())
    equal = all(v == values[0] for v in values)
    answer = (_as_int32(meeting.mask) if equal else np.int32(0), equal)
    return dict.fromkeys(meeting.arguments, answer)


_RESULTS = {
    "shfl_sync": _shuffle("idx"), "shfl_up_sync": _shuffle("up"),
    "shfl_down_sync": _shuffle("down"), "shfl_xor_sync": _shuffle("xor"),
    "ballot_sync": _ballot,
    "all_sync": _vote(all), "any_sync": _vote(any),
    "eq_sync": _vote(lambda ps: all(ps) or not any(ps)),
    "match_any_sync": _match_any, "match_all_sync": _match_all,
    "syncwarp": lambda meeting: dict.fromkeys(meeting.arguments),
}


# -------------------------------------------------------------------------- the meeting
def _meet(kind, mask, argument):
    """Bring ``argument`` to the meeting of the lanes in ``mask``; return this lane's result."""
    thread = threading.current_thread()
    state = _block_warps(thread._manager)
    warp, lane = divmod(thread.thread_id, WARP_SIZE)
    named = int(mask) & FULL_MASK
    mask = named & lanes_in_warp(state.threads_in_block, warp)
    if not mask >> lane & 1:
        raise RuntimeError(f"{kind}: lane {lane} of warp {warp} calls it with mask {named:#010x}, "
                           "which does not name it (undefined on a GPU)")
    with state.condition:
        meeting = state.pending.get((warp, mask))
        if meeting is None:
            meeting = state.pending[(warp, mask)] = _Meeting(mask, kind)
        elif meeting.kind != kind:
            raise RuntimeError(f"warp {warp}: lanes of mask {mask:#010x} met at different primitives: "
                               f"lane {lane} at {kind}, lanes {sorted(meeting.arguments)} at {meeting.kind}")
        meeting.arguments[lane] = argument
        if len(meeting.arguments) == bin(mask).count("1"):
            meeting.results = _RESULTS[kind](meeting)
            del state.pending[(warp, mask)]
            state.condition.notify_all()
        else:
            state.waiting[thread.thread_id] = meeting
            try:
                while meeting.results is None:
                    state.condition.wait(POLL_SECONDS)
                    if thread.abort:
                        raise _LaneStopped()
                    if meeting.results is None:
                        _raise_if_stuck(state, warp, meeting)
            finally:
                del state.waiting[thread.thread_id]
        return meeting.results[lane]


def _failed(thread):
    """Whether a thread's kernel function raised (the simulator's thread keeps the error as
    ``exception``, the access profiler's as ``error``)."""
    return getattr(thread, "exception", None) is not None or getattr(thread, "error", None) is not None


def _barriers_open_through(state):
    """The number of the last syncthreads barrier known to be open: the most barriers any
    thread not waiting at one has entered (it got through them all). A thread flagged as
    waiting at a barrier up to this number is being let through by the simulator, which
    releases a barrier's threads one by one. Called with the condition held (the roster
    changes under it)."""
    return max((_barriers_entered(t) for t in state.roster.values() if not t.syncthreads_blocked), default=0)


def _barriers_entered(thread):
    # A thread class that does not count its barriers (another tool's stand-in for the
    # simulator's) counts as never past one: its lanes at a barrier are never taken for stuck.
    return getattr(thread, "barriers_entered", 0)


def _waits_at_closed_barrier(thread, open_through):
    return thread is not None and thread.syncthreads_blocked and _barriers_entered(thread) > open_through


def _lane_state(state, thread_id, can_complete, open_through):
    """Whether the lane may still arrive somewhere, and if not, why not."""
    thread = state.roster.get(thread_id)
    if thread_id in state.exited:
        return False, "failed" if _failed(thread) else "has exited"
    if _waits_at_closed_barrier(thread, open_through):
        return False, "waits at syncthreads"
    meeting = state.waiting.get(thread_id)
    if meeting is not None and meeting.results is None and not can_complete.get(id(meeting), False):
        return False, f"waits at {meeting.kind} with mask {meeting.mask:#010x}"
    return True, "is running"


def _raise_if_stuck(state, warp, mine):
    """A meeting can complete if each lane it still misses is running, or waits at a meeting
    that can complete (the least fixed point, so a cycle of meetings waiting for each other
    counts as stuck). A lane that has exited or waits at syncthreads never arrives: the
    barrier cannot open while this lane waits here. Called with the condition held."""
    base = warp * WARP_SIZE
    open_through = _barriers_open_through(state)
    meetings = [m for (w, _), m in state.pending.items() if w == warp]
    can_complete = {}
    changed = True
    while changed:
        changed = False
        for m in meetings:
            if not can_complete.get(id(m)) and all(
                    _lane_state(state, base + lane, can_complete, open_through)[0]
                    for lane in _lanes(m.mask) if lane not in m.arguments):
                can_complete[id(m)] = changed = True
    if can_complete.get(id(mine)):
        return
    if any(_failed(state.roster[t]) for t in state.exited):
        raise _LaneStopped()    # the block failed elsewhere: that error is the one to report
    reasons = [f"lane {lane} {_lane_state(state, base + lane, can_complete, open_through)[1]}"
               for lane in _lanes(mine.mask) if lane not in mine.arguments]
    raise RuntimeError(f"{mine.kind} in warp {warp} with mask {mine.mask:#010x} can never complete: "
                       + "; ".join(reasons))


# ---------------------------------------------------------- the calls a kernel makes
def shfl_sync(self, mask, value, src_lane):
    return _meet("shfl_sync", mask, (value, src_lane))


def shfl_up_sync(self, mask, value, delta):
    return _meet("shfl_up_sync", mask, (value, delta))


def shfl_down_sync(self, mask, value, delta):
    return _meet("shfl_down_sync", mask, (value, delta))


def shfl_xor_sync(self, mask, value, lane_mask):
    return _meet("shfl_xor_sync", mask, (value, lane_mask))


def ballot_sync(self, mask, predicate):
    return _meet("ballot_sync", mask, predicate)


def all_sync(self, mask, predicate):
    return _meet("all_sync", mask, predicate)


def any_sync(self, mask, predicate):
    return _meet("any_sync", mask, predicate)


def eq_sync(self, mask, predicate):
    return _meet("eq_sync", mask, predicate)


def match_any_sync(self, mask, value):
    return _meet("match_any_sync", mask, value)


def match_all_sync(self, mask, value):
    return _meet("match_all_sync", mask, value)


def syncwarp(self, mask=FULL_MASK):
    _meet("syncwarp", mask, None)


def activemask(self):
    """The lanes of this warp that have not exited, once the others have gone as far as
    they can without this lane: each has exited or waits (at syncthreads, at a meeting, or
    here). Lanes found waiting here together get the same answer. Without that wait the
    answer would depend on how far the OS had run each thread."""
    thread = threading.current_thread()
    state = _block_warps(thread._manager)
    warp = thread.thread_id // WARP_SIZE
    lanes = lanes_in_warp(state.threads_in_block, warp)
    warp_threads = [warp * WARP_SIZE + lane for lane in _lanes(lanes)]
    with state.condition:
        state.at_activemask[thread.thread_id] = None
        try:
            while state.at_activemask[thread.thread_id] is None:
                if all(_settled(state, t) for t in warp_threads if t != thread.thread_id):
                    exited = sum(1 << (t - warp * WARP_SIZE) for t in warp_threads if t in state.exited)
                    for t in warp_threads:
                        if state.at_activemask.get(t, 0) is None:
                            state.at_activemask[t] = np.uint32(lanes & ~exited)
                    state.condition.notify_all()
                else:
                    state.condition.wait(POLL_SECONDS / 50)
                    if thread.abort:
                        raise _LaneStopped()
            return state.at_activemask[thread.thread_id]
        finally:
            del state.at_activemask[thread.thread_id]


def _settled(state, thread_id):
    """Whether a thread has exited or waits where only other threads can release it."""
    if thread_id in state.exited or state.at_activemask.get(thread_id, 0) is None:
        return True
    meeting = state.waiting.get(thread_id)
    if meeting is not None and meeting.results is None:
        return True
    return _waits_at_closed_barrier(state.roster.get(thread_id), _barriers_open_through(state))


def lanemask_lt(self):
    lane = threading.current_thread().thread_id % WARP_SIZE
    return np.uint32((1 << lane) - 1)


def install():
    """Give the simulator's cuda module the warp primitives (once per process)."""
    global _installed
    if _installed:
        return
    from numba.cuda.simulator import kernel, kernelapi

    class WarpAwareBlockThread(kernel.BlockThread):
        """The simulator's thread, which also tells its block's warp state when it is
        created and when its kernel function returns (an exited lane never arrives)."""

        def __init__(self, f, manager, *args, **kwargs):
            super().__init__(f, manager, *args, **kwargs)
            self.barriers_entered = 0     # syncthreads calls so far (each block-wide barrier has a number)
            self._warp_state = _block_warps(manager)
            with self._warp_state.condition:      # others iterate the roster under this lock
                self._warp_state.roster[self.thread_id] = self

        def syncthreads(self):
            self.barriers_entered += 1
            super().syncthreads()

        def run(self):
            try:
                super().run()
                if self.exception is not None and isinstance(self.exception[0], _LaneStopped):
                    self.exception = None
            finally:
                state = self._warp_state
                with state.condition:
                    state.exited.add(self.thread_id)
                    if state.waiting or state.at_activemask:   # someone may be waiting for this lane
                        state.condition.notify_all()

    kernel.BlockThread = WarpAwareBlockThread
    for name, function in (("shfl_sync", shfl_sync), ("shfl_up_sync", shfl_up_sync),
                           ("shfl_down_sync", shfl_down_sync), ("shfl_xor_sync", shfl_xor_sync),
                           ("ballot_sync", ballot_sync), ("all_sync", all_sync), ("any_sync", any_sync),
                           ("eq_sync", eq_sync), ("match_any_sync", match_any_sync),
                           ("match_all_sync", match_all_sync), ("syncwarp", syncwarp),
                           ("activemask", activemask), ("lanemask_lt", lanemask_lt)):
        setattr(kernelapi.FakeCUDAModule, name, function)
    _installed = True
