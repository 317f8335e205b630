"""Targets that draw from module-level generators (a test module: watched, as an application's would be)."""

import random

rng = random.Random()  # unseeded
seeded = random.Random(42)


def draw():
    rng.random()
    seeded.random()
