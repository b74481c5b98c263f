"""Mutated videos for fuzzing the ingestion: bit flips, truncation, box corruption, inserted,
duplicated and zeroed byte ranges. Shared by tests/robustness and benchmarks/fuzz_videos.py."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator

Mutator = Callable[[bytes, random.Random], bytes]


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 64)):
        index = rng.randrange(12, len(out))  # past the signature: the upload check must pass
        out[index] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randint(12, len(data) - 1)]


def header_corruption(data: bytes, rng: random.Random) -> bytes:
    """Overwrite a few bytes of the first 64, the container's signature included."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(min(64, len(out)))] = rng.randrange(256)
    return bytes(out)


def box_corruption(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the size field of a random MP4 box/RIFF chunk header to a hostile value."""
    out = bytearray(data)
    tags = [i - 4 for i in range(8, len(out) - 4) if out[i : i + 4].isalpha()]
    if not tags:
        return bit_flips(data, rng)
    at = rng.choice(tags[:200])
    hostile = rng.choice([0, 1, 7, 0xFFFFFFFF, 0x7FFFFFFF, len(data) * 1000, rng.getrandbits(32)])
    if data[:4] == b"RIFF":  # RIFF sizes are little-endian and follow the tag
        struct.pack_into("<I", out, at + 8, hostile)
    else:
        struct.pack_into(">I", out, at, hostile)
    return bytes(out)


def chunk_insertion(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(12, len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 4096)) + data[at:]


def chunk_duplication(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(12, len(data) - 1)
    end = min(len(data), start + rng.randint(1, 65536))
    return data[:end] + data[start:end] * rng.randint(1, 4) + data[end:]


def zeroed_range(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(12, len(data) - 1)
    end = min(len(data), start + rng.randint(1, 32768))
    return data[:start] + bytes(end - start) + data[end:]


MUTATORS: dict[str, Mutator] = {
    "bit_flips": bit_flips,
    "truncation": truncation,
    "header_corruption": header_corruption,
    "box_corruption": box_corruption,
    "chunk_insertion": chunk_insertion,
    "chunk_duplication": chunk_duplication,
    "zeroed_range": zeroed_range,
}


def mutants(
    seeds: list[tuple[str, bytes]], *, count: int, seed: int
) -> Iterator[tuple[str, bytes]]:
    """``count`` (name, bytes) mutants, cycling over seed files and mutators, reproducibly."""
    rng = random.Random(seed)
    names = sorted(MUTATORS)
    for index in range(count):
        seed_name, data = seeds[index % len(seeds)]
        kind = names[(index // len(seeds)) % len(names)]
        mutated = MUTATORS[kind](data, rng)
        if rng.random() < 0.2:  # a second mutation on top, now and then
            mutated = MUTATORS[rng.choice(names)](mutated, rng)
        yield f"{index:04d}-{seed_name}-{kind}", mutated
