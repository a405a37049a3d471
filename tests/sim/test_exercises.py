"""Every exercise's simulator checks pass on its reference solution and fail on its
untouched skeleton (kernels/exercises/). The PTX checks: tests/test_exercises.py."""
import pytest

from dcgan_cuda.kernels.exercises.checks import EXERCISES, load


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_the_solution_passes_and_the_skeleton_fails(key):
    exercise = EXERCISES[key]
    solved = exercise.simulate(load(exercise, solution=True))
    assert solved and all(c.passed for c in solved), [c for c in solved if not c.passed]
    untouched = exercise.simulate(load(exercise))
    assert [c.name for c in untouched] == [c.name for c in solved]      # the same questions
    assert not all(c.passed for c in untouched), f"{key}: the untouched skeleton passes its checker"
