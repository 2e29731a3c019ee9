"""flagd's `fractional` targeting: a stable bucket per (flag, targeting key), so a session stays on
its variant while the weights stay the same. MurmurHash3 (x86, 32-bit, seed 0) of flagKey + key as
a signed int; its magnitude over 2**31 - 1 is the bucket in [0, 100]; variants take consecutive
shares of 100 in their weights' proportion."""

from __future__ import annotations

from typing import Sequence

_M = 0xFFFFFFFF
_MAX_INT32 = 2**31 - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M


def murmur3_32(data: bytes, seed: int = 0) -> int:
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M
    n = len(data)
    whole = n - n % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = _rotl((k * c1) & _M, 15) * c2 & _M
        h = (_rotl(h ^ k, 13) * 5 + 0xE6546B64) & _M
    k = 0
    for j, byte in enumerate(data[whole:]):
        k |= byte << (8 * j)
    if n % 4:
        h ^= _rotl((k * c1) & _M, 15) * c2 & _M
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M
    return h ^ (h >> 16)


def bucket(flag_key: str, targeting_key: str) -> float:
    """Where this key falls for this flag, in [0, 100]."""
    value = murmur3_32((flag_key + targeting_key).encode("utf-8", "surrogatepass"))
    signed = value - 2**32 if value > _MAX_INT32 else value
    return min(abs(signed), _MAX_INT32) / _MAX_INT32 * 100


def pick(flag_key: str, targeting_key: str, weights: Sequence[tuple[str, int]]) -> str:
    """The variant of `weights` ((variant, weight) in order) this key falls in."""
    total = sum(w for _, w in weights)
    at = bucket(flag_key, targeting_key)
    end = 0.0
    for variant, weight in weights:
        end += weight * 100 / total
        if at < end:
            return variant
    return weights[-1][0]
