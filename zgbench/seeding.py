"""Seeds derived by hashing, so adding a task or optimizer changes no other run's numbers.

Every random stream of a run gets its own seed from the names that identify it: the task
instance from (task spec, repetition), the optimizer from (task spec, optimizer spec,
repetition), and so on. Python's ``hash`` is salted per process, so we use BLAKE2.

Secret instances (``zgbench run --instances secret``): a leaderboard that ranks untrusted
optimizers must not let a plugin rebuild its task instances from the public derivation
above. There, the task seed and the evaluation key come from HMAC-SHA256 under a key the
organizer keeps (:class:`InstanceKey`, read from :data:`KEY_ENV` or a file outside the
results folder); runs carry the derived seeds, never the key, and records say which set
they ran on (``instances``, ``instance_key``: the key's public id).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zgbench.errors import UsageError


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


# ------------------------------------------------------------------ secret instances
#: The environment variable that holds the organizer's instance key (``--instances secret``).
KEY_ENV = "ZGBENCH_INSTANCE_KEY"
#: The shortest key accepted, in bytes: a guessable key makes guessable instances.
KEY_MIN = 16
#: What a record says of the instance set it ran on (absent in older records: public).
PUBLIC, SECRET = "public", "secret"


@dataclass(frozen=True)
class InstanceKey:
    """The organizer's key for secret instances: task seeds salted with it by HMAC-SHA256,
    so that a plugin author who knows the public seed derivation (and every public
    instance) cannot rebuild the instances a leaderboard ranks. Only the driver holds it:
    runs carry the seeds derived from it, never the key (:func:`secret_runs`)."""

    secret: bytes = field(repr=False)

    @property
    def id(self) -> str:
        """A short public name of the key (records and boards tell instance sets apart by
        it); it reveals nothing of the key."""
        return hmac.new(self.secret, b"zgbench instance key id", hashlib.sha256).hexdigest()[:12]

    def seed(self, *parts: object) -> int:
        """The secret twin of :func:`derive_seed`: a 63-bit seed from the same parts."""
        text = "\x1f".join(str(p) for p in parts).encode()
        digest = hmac.new(self.secret, text, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little") >> 1


def load_instance_key(results: str | Path, key_file: str | Path | None = None,
                      environ: MutableMapping[str, str] | None = None) -> InstanceKey:
    """The organizer's key from ``key_file`` (not inside ``results``: a results folder is
    published and readable by whoever reads results) or the environment variable
    :data:`KEY_ENV`. The variable is removed from ``environ`` (default ``os.environ``) once
    read, so worker and optimizer processes started later do not inherit it."""
    environ = os.environ if environ is None else environ
    if key_file is not None:
        path = Path(key_file).expanduser()
        if _inside(path, Path(results)):
            raise UsageError(f"--instance-key-file {path} is inside the results folder "
                             f"{results}, which is published and read by whoever reads the "
                             "results: keep the key outside it")
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --instance-key-file {path}: {exc.strerror or exc}") \
                from None
        where = f"--instance-key-file {path}"
        environ.pop(KEY_ENV, None)
    else:
        text = environ.pop(KEY_ENV, None)
        if text is None:
            raise UsageError(f"--instances secret needs the organizer's key: set {KEY_ENV} "
                             "or give --instance-key-file PATH (outside the results folder); "
                             "make one with: python -c 'import secrets; "
                             "print(secrets.token_hex(32))'")
        secret, where = text.strip().encode(), KEY_ENV
    if len(secret) < KEY_MIN:
        raise UsageError(f"the instance key in {where} is {len(secret)} bytes: give at least "
                         f"{KEY_MIN} (python -c 'import secrets; print(secrets.token_hex(32))')")
    return InstanceKey(secret)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved, links followed) is ``folder`` or lies under it."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def instance_set(records: Iterable[Mapping[str, Any]]) -> str:
    """The one instance set ``records`` ran on: ``"public"`` or ``"secret:<key id>"``.
    Boards rank one set: numbers on other instances are not comparable, and a board of
    public instances (the published one) must not quietly include secret ones. Records
    written before instance sets existed are public."""
    sets = {record_instances(r) for r in records}
    if len(sets) > 1:
        raise UsageError("these results mix instance sets (" + ", ".join(sorted(sets)) +
                         "): a board ranks one. Run each set into its own results folder "
                         "(--out), and publish the public one")
    return sets.pop() if sets else PUBLIC


def record_instances(record: Mapping[str, Any]) -> str:
    """A record's instance set as :func:`instance_set` names it."""
    if record.get("instances", PUBLIC) == PUBLIC:
        return PUBLIC
    return f"{SECRET}:{record.get('instance_key') or '?'}"
