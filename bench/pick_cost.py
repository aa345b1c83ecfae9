"""Pick cost per balancing method as pools grow: `python -m bench.pick_cost`.

Builds a pool of N members for every method, warms the balancer up (its
structures are built on the first pick of a candidates tuple), then times
picks with on_open/on_close around them, as the data plane calls them, with
every member available and a spread of client keys. Prints microseconds per
pick at 2, 16, 128 and 1,024 members. No sockets, no appliance process.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

from appliance.core.balancing import make_balancer
from appliance.core.model import Endpoint, Member, Method, Pool
from appliance.core.stats import MemberStats

SIZES = (2, 16, 128, 1024)


@dataclass(frozen=True)
class Candidate:
    """The surface a balancer reads, like the snapshot's MemberView."""

    slot: int
    name: str
    ratio: int
    stats: MemberStats
    ramp_start: float | None = None

    @property
    def active(self) -> int:
        return self.stats.active

    @property
    def available(self) -> bool:
        return True


def pick_cost(method: Method, size: int, picks: int) -> float:
    members = tuple(
        Member(address=Endpoint(host="127.0.0.1", port=10000 + i), name=f"m{i}", ratio=1 + i % 4) for i in range(size)
    )
    balancer = make_balancer(Pool(name="p", method=method, members=members))
    candidates = tuple(Candidate(i, m.name, m.ratio, MemberStats()) for i, m in enumerate(members))
    keys = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}".encode() for i in range(4096)]
    now = 1000.0
    open_ = []
    for i in range(200):  # warm-up: structures built, some load in flight
        chosen = balancer.pick(candidates, keys[i % 4096], (), now)
        assert chosen is not None
        chosen.stats.opened()  # type: ignore[attr-defined]
        balancer.on_open(chosen)
        open_.append(chosen)
    started = time.perf_counter()
    for i in range(picks):
        chosen = balancer.pick(candidates, keys[i % 4096], (), now + i * 1e-4)
        assert chosen is not None
        chosen.stats.opened()  # type: ignore[attr-defined]
        balancer.on_open(chosen)
        done = open_.pop(0)
        done.stats.closed()  # type: ignore[attr-defined]
        balancer.on_close(done)
        balancer.observe(done, 0.001 + (done.slot % 7) * 1e-4)
        open_.append(chosen)
    return (time.perf_counter() - started) / picks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=20000, help="timed picks per method and size")
    parser.add_argument("--json", help="write the table as JSON to this file")
    args = parser.parse_args()
    table = {m.value: {n: round(pick_cost(m, n, args.picks), 2) for n in SIZES} for m in Method}
    print(f"{'method':26s}" + "".join(f"{n:>10d}" for n in SIZES) + "   (µs per pick incl. open/close/observe)")
    for method, row in table.items():
        print(f"{method:26s}" + "".join(f"{row[n]:>10.2f}" for n in SIZES))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(table, out, indent=2)


if __name__ == "__main__":
    main()
