"""The check decorator: seeded inside, the caller's generators untouched outside."""

import random

import numpy as np
import torch

from dgmlab.checks.core import check


def draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), np.random.rand()


def test_a_check_draws_the_same_numbers_every_time() -> None:
    seen = []

    @check
    def draw_inside() -> None:
        seen.append(draws())

    torch.manual_seed(1)
    draw_inside()
    torch.manual_seed(2)
    draw_inside()
    assert seen[0] == seen[1]


def test_a_check_leaves_the_callers_generators_as_they_were() -> None:
    @check
    def draw_inside() -> None:
        draws()

    for seed in (torch.manual_seed, random.seed, np.random.seed):
        seed(7)
    expected = draws()
    for seed in (torch.manual_seed, random.seed, np.random.seed):
        seed(7)
    draw_inside()
    assert draws() == expected


def test_a_check_prints_its_name(capsys) -> None:
    @check
    def quiet() -> None:
        pass

    quiet()
    assert capsys.readouterr().out == "passed: quiet\n"
