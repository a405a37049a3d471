"""Exercises that check themselves: a skeleton you fill in, a checker you run, on a laptop.

Each exercise is one file in this folder, a working (or deliberately wrong) starting
point with the task in its docstring and ``TODO`` where the work goes. Edit the file, then

    python -m dcgan_cuda.kernels.exercises check b1        # one exercise
    python -m dcgan_cuda.kernels.exercises check all       # every exercise
    python -m dcgan_cuda.kernels.exercises list            # what there is

The checker runs your kernels under Numba's CUDA simulator against a NumPy reference, and
where the exercise is about speed it checks the property that makes it fast, from
evidence that needs no GPU: what the access profiler (kernels/access_profiler.py) counts
of global sectors per request and shared-memory bank conflicts, how many barriers each
thread passes, how many launches a step takes, what the compiler writes in PTX. Each
check prints ``ok`` or ``FAIL`` with the reason; the exit status is 0 when all pass.

Beginner (after lesson0_threads.py and elementwise.py)
    b1  a guarded map                 one thread per element, and the threads past the end
    b2  a 2-D map                     rows and columns from a 2-D grid, coalesced
    b3  a grid-stride loop            any n with a fixed grid, each element exactly once
    b4  a coalescing fix              the same result with a quarter of the sectors
Intermediate (after reduction/)
    i1  a shared-memory transpose     both sides coalesced, no bank conflicts
    i2  a block reduction             a tree in shared memory instead of one thread's loop
    i3  a warp-shuffle reduction      32 values summed in registers, no shared memory
Advanced (after linear/ and conv2d)
    a1  a fused epilogue with split-K the activation after the splits are summed
    a2  shuffles for the last five steps   fewer barriers, bitwise the same sum
    a3  double-buffered tiles         one barrier per slice instead of two; occupancy
    a4  the A tile stored transposed  conflict-free shared reads in a register-blocked GEMM
    a5  normalise on load             batchnorm's scale and shift inside a GEMM's loads

Reference solutions are in ``solutions/`` (``check b1 --solution`` checks them); read
one after your own passes. The simulator's sizes are tiny, so a check takes seconds.
"""
# Under the simulator, jit.py gives it the warp primitives (shuffles, votes) that i3 and a2 use.
from .. import jit as _jit  # noqa: E402,F401
