"""Free loopback ports for tests that start servers: 31200-31299 only (the range this
project's tests may use on shared machines)."""

from __future__ import annotations

import random
import socket

LOW, HIGH = 31200, 31300


def free_ports(n: int) -> list[int]:
    """n consecutive free ports in [LOW, HIGH)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(LOW, HIGH - n + 1)
        socks = []
        try:
            for p in range(base, base + n):
                sk = socket.socket()
                socks.append(sk)
                sk.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for sk in socks:
                sk.close()
        return list(range(base, base + n))
    raise RuntimeError(f"no {n} free ports in {LOW}-{HIGH - 1}")
