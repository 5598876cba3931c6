"""CPU a worker costs: K readers behind one relay against K readers on the local store directly.

Starts K reader processes (the probe's readers: engine, guard, audit recorder) either on
``BREAKGLASS_PROVIDER=relay`` behind one ``breakglass relay``, or on the local provider directly,
then reads each reader's CPU time from ``/proc`` over 8 s idle and over 8 s of toggling the flag
as fast as the local store takes it. Linux only.

    .venv/bin/python benchmarks/relay_worker_cpu.py --workers 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from breakglass.local.store import LocalStore
from breakglass.probe.fleet import Fleet
from breakglass.relay.process import RelayProcess

FLAG = "system-active"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(workers: int, *, via_relay: bool, seconds: float) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="bg-relay-cpu-"))
    store = LocalStore(tmp / "local.db")
    store.write(FLAG, value=True, actor="benchmark", reason="start")
    env: dict[str, str | None] = {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_STATE_DIR": str(tmp / "relay-state"),
        "BREAKGLASS_LOCAL__PATH": str(tmp / "local.db"),
        "BREAKGLASS_RELAY__PATH": str(tmp / "relay.channel"),
    }
    settings = (
        {"provider": "relay", "sections": {"relay": {"path": str(tmp / "relay.channel")}}}
        if via_relay
        else {"provider": "local", "local": {"path": str(tmp / "local.db")}}
    )
    relay = RelayProcess(env, tmp / "relay.log")
    lines = []
    if via_relay:
        relay.start()
    try:
        with Fleet(workers, settings, tmp, ready_timeout=60, lifetime=600) as fleet:
            fleet.start()
            fleet.wait_ready(180, lambda: None)
            time.sleep(2)
            pids = [r.pid for r in fleet.readers]
            for phase in ("idle", "toggling"):
                before = [cpu_seconds(p) for p in pids]
                relay_before = cpu_seconds(relay.pid) if via_relay else 0.0
                started, toggles = time.monotonic(), 0
                while time.monotonic() - started < seconds:
                    if phase == "toggling":
                        store.write(FLAG, toggles % 2 == 1, actor="benchmark", reason="toggle")
                        toggles += 1
                    fleet.poll(0.1)
                elapsed = time.monotonic() - started
                used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
                relay_used = (cpu_seconds(relay.pid) - relay_before) if via_relay else 0.0
                share = sorted(u / elapsed * 100 for u in used)
                lines.append(
                    f"| {'relay' if via_relay else 'direct'} | {workers} | {phase} | {toggles} | "
                    f"{share[len(share) // 2]:.2f} | {sum(share):.0f} | "
                    f"{relay_used / elapsed * 100:.1f} |"
                )
    finally:
        relay.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    print(
        "| reading | K | phase | toggles | worker CPU % (median) | all workers CPU % | relay CPU % |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for via_relay in (True, False):
        for line in measure(args.workers, via_relay=via_relay, seconds=args.seconds):
            print(line)
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
