"""One training step as a CUDA graph: captured once, then replayed every iteration.

A DCGAN step on our kernels is ~134 launches (bench/results/cpu/launches.md), each costing
the host some microseconds in Python, Numba and the driver; where the GPU finishes a
kernel sooner than the host can queue the next, the step is as long as its launch loop.
A CUDA graph records the launches once and replays them with one call.

A graph replays exactly what was queued during capture, so everything a step does
must be expressible that way. What stands in the way, and how each is met:

  1. Launch arguments are frozen at capture. Adam's two step-dependent numbers would be
     stale at every replay, so they move to device memory (optim.Adam.keep_scalars_on_device)
     and the host rewrites that memory before each replay.
  2. Array addresses are frozen too. The real batch and the noise are copied into two
     static buffers before each replay, and the step reads those.
  3. A host read-back (loss.item()) cannot be captured. The step is split into
     train.step_on_device, which is captured, and train.read_step, which reads the
     captured step's output tensors after each replay.
  4. Python runs once, during capture. The host counters a step advances (each optimizer's
     step count, each batchnorm's num_batches_tracked) are advanced by this class after
     every replay, by as much as the capture advanced them.
  5. Memory the graph uses must not be handed to anyone else between replays. Capture
     allocates from a private CuPy memory pool that lives as long as the graph and serves
     nothing else (PyTorch's graphs do the same); a first step, run eagerly with that pool,
     leaves it holding a block of every size the step needs, so capture itself does not
     call cudaMalloc. Kernel scratch space is kept per stream for the whole process
     (kernels/reduction.workspace), and the output tensors are held here.
  6. The legacy default stream cannot be captured: the graph gets a stream of its own,
     a blocking one, so that work queued on the default stream between iterations (sample
     grids, checkpoints) stays ordered with the replays.

A batch of another shape (the last one of an epoch) runs eagerly, with the optimizers
still reading their scalars from memory.

Under Numba's simulator there are no graphs; the same class then records the kernel
launches and device copies of the captured step (kernels/jit.recording) and replays that
list, which is a graph's contract. CI tests the bookkeeping above that way, against eager
steps, bit for bit; tests/test_gpu.py does the same with a real graph.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .autograd import Tensor
from .train import read_step, step_on_device


class GraphCaptureError(RuntimeError):
    """The step could not be captured into a CUDA graph; the message says why."""


class GraphedTrainStep:
    """``step(real, noise) -> metrics``, like train.train_step, replaying a captured graph.

    real and noise are Tensors on the models' backend (cuda or sim). The first call runs
    eagerly (warm-up), the second captures and runs the graph, later calls with the same
    shapes replay it. ``release()`` hands the optimizers back their usual kernel.
    """

    def __init__(self, netG, netD, optG, optD):
        self.models, self.optimizers = (netG, netD), (optG, optD)
        self.backend = optG.backend
        if self.backend.name not in ("cuda", "sim"):
            raise GraphCaptureError(f"CUDA graphs need our kernels on a GPU (--device cuda); "
                                    f"this run uses the {self.backend.name} backend")
        self.counters = [m for net in self.models for _, m in net.named_modules()
                         if "num_batches_tracked" in m._buffers]
        for opt in self.optimizers:
            opt.keep_scalars_on_device()
        self.graph = self.shapes = self.outputs = None
        self.inputs = None          # the static real and noise buffers, as Tensors
        self.counter_steps = None   # how much one step advances each counter
        self.warm = False
        self.replays = 0
        if self.backend.is_gpu:
            import cupy
            self.stream = cupy.cuda.Stream(non_blocking=False)
            self.pool = cupy.cuda.MemoryPool()

    # -- contexts: where the work is queued and where its memory comes from -----------
    def _on_stream(self):
        return self.stream if self.backend.is_gpu else contextlib.nullcontext()

    def _private_memory(self):
        if not self.backend.is_gpu:
            return contextlib.nullcontext()
        import cupy
        return cupy.cuda.using_allocator(self.pool.malloc)

    # -- the step ------------------------------------------------------------------------
    def __call__(self, real, noise):
        shapes = (tuple(real.shape), tuple(noise.shape))
        with self._on_stream():
            for opt in self.optimizers:
                opt.write_scalars(opt.step_count + 1)
            if self.graph is not None:
                if shapes != self.shapes:   # e.g. an epoch's short last batch
                    return read_step(step_on_device(*self.models, *self.optimizers, real, noise))
                self._replay(real, noise)
                return read_step(self.outputs)
            if shapes != self.shapes:       # the first call, or a new shape before any capture
                B = self.backend
                self.shapes, self.warm = shapes, False
                self.inputs = (Tensor(B.empty(shapes[0]), B), Tensor(B.empty(shapes[1]), B))
            self._load(real, noise)
            if not self.warm:
                with self._private_memory():
                    outputs = step_on_device(*self.models, *self.optimizers, *self.inputs)
                self.warm = True
                return read_step(outputs)
            self._capture()
            return read_step(self.outputs)

    def _load(self, real, noise):
        for static, fresh in zip(self.inputs, (real, noise)):
            self.backend.copy_into(static.data, fresh.data)

    def _counts(self):
        return ([opt.step_count for opt in self.optimizers],
                [int(m._buffers["num_batches_tracked"]) for m in self.counters])

    def _set_counts(self, counts):
        steps, tracked = counts
        for opt, n in zip(self.optimizers, steps):
            opt.step_count = n
        for m, n in zip(self.counters, tracked):
            m._buffers["num_batches_tracked"] = np.array(n, dtype=np.int64)   # as nn.BatchNorm2d keeps it

    def _capture(self):
        before = self._counts()
        try:
            with self._private_memory():
                if self.backend.is_gpu:
                    graph, outputs = self._capture_on_gpu()
                else:
                    from .kernels import jit
                    with jit.recording() as graph:
                        outputs = step_on_device(*self.models, *self.optimizers, *self.inputs)
        except Exception:
            self._set_counts(before)      # the captured Python ran, the step did not
            raise
        after = self._counts()
        self.counter_steps = [[a - b for a, b in zip(x, y)] for x, y in zip(after, before)]
        self.graph, self.outputs = graph, outputs
        self._launch()                    # capture only recorded the step: now run it

    def _capture_on_gpu(self):
        import cupy
        self.stream.synchronize()
        mode = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", None)
        self.stream.begin_capture(*(() if mode is None else (mode,)))
        outputs, failure = None, None
        try:
            outputs = step_on_device(*self.models, *self.optimizers, *self.inputs)
        except Exception as exc:          # leave capture mode before reporting
            failure = exc
        try:
            graph = self.stream.end_capture()
        except Exception as exc:
            raise GraphCaptureError(f"CUDA graph capture of the training step failed: {exc}") from exc
        if failure is not None:
            raise GraphCaptureError(f"the training step failed while being captured: {failure}") from failure
        return graph, outputs

    def _launch(self):
        if self.backend.is_gpu:
            self.graph.launch(self.stream)
        else:
            from .kernels import jit
            jit.replay(self.graph)

    def _replay(self, real, noise):
        self._load(real, noise)
        self._launch()
        steps, tracked = self._counts()
        d_steps, d_tracked = self.counter_steps
        self._set_counts(([n + d for n, d in zip(steps, d_steps)],
                          [n + d for n, d in zip(tracked, d_tracked)]))
        self.replays += 1

    def release(self):
        """Back to plain steps: the optimizers pass their scalars as arguments again."""
        for opt in self.optimizers:
            opt.device_scalars = None
        self.graph = self.outputs = None
