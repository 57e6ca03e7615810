"""Seeds derived by hashing, so adding a task or optimizer changes no other run's numbers.

Every random stream of a run gets its own seed from the names that identify it: the task
instance from (task spec, repetition), the optimizer from (task spec, optimizer spec,
repetition), and so on. Python's ``hash`` is salted per process, so we use BLAKE2.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
