"""`tokenvault simulator serve`: the built-in Graph API simulator as a local HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import render

app = typer.Typer(help="The built-in Graph API simulator (offline tests and demos).", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="simulator")


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option("--port", help="TCP port; 0 picks a free one.")] = 8765,
    state_file: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional
        typer.Option("--state", help="JSON state file (0600): loaded if it exists, saved after every change."),
    ] = None,
    seed_demo: Annotated[bool, typer.Option("--seed-demo", help="Start from the demo world (new state only).")] = False,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option("--seed", help="RNG seed for token values and ids (new state only).")] = 0,
    start: Annotated[str, typer.Option("--start", help="Simulated start time, ISO-8601 or 'now' (new state only); "
                                                       "the clock then stands still until /_sim/advance.")] = "now",
    realtime: Annotated[bool, typer.Option("--realtime", help="The clock follows real time instead of standing "
                                                              "still (rate-limit windows reopen by themselves).")
                        ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON line (url, pid, demo) on start.")] = False,
) -> None:
    """Serve the Graph API simulator on HOST:PORT until interrupted (Ctrl-C or SIGTERM).

    Point tokenvault (or your own tests) at it with TOKENVAULT_GRAPH_URL=http://HOST:PORT. Steer it with
    the /_sim/ control endpoints (docs/simulator.md). The state file holds tokens: it is written 0600.
    """
    import json
    import os
    import signal
    import sys
    import threading

    from meta_tokenvault.errors import InvalidInput
    from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock

    clock = SimClock(_start_time(start))

    if state_file is not None and state_file.exists():
        try:
            sim = GraphSimulator.load(state_file)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{state_file} is not a simulator state file: {exc}",
                               hint="Give another --state path, or remove the file to start afresh.") from None
        if seed_demo and sim.demo is None:
            render.info("note: --seed-demo ignored: the state file exists already")
    elif seed_demo:
        sim, _ = GraphSimulator.demo_world(clock, seed=seed)
    else:
        sim = GraphSimulator(clock=clock, seed=seed)
    if realtime:
        sim.clock.run()
    if state_file is not None:
        sim.save(state_file)
    try:
        server = sim.serve(host, port, state_path=state_file)
    except OSError as exc:
        raise InvalidInput(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                           hint="Choose another --port (0 picks a free one).") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    demo = sim.demo.as_dict() if sim.demo else None
    if json_out:
        sys.stdout.write(json.dumps({"url": server.url, "port": server.port, "pid": os.getpid(),
                                     "state": str(state_file) if state_file else None, "demo": demo}) + "\n")
    else:
        sys.stdout.write(f"Graph API simulator on {server.url} (pid {os.getpid()})\n")
        for key, value in (demo or {}).items():
            sys.stdout.write(f"  {key}: {value}\n")
        sys.stdout.write("Ctrl-C to stop.\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    render.info("simulator stopped" + (f"; state saved to {state_file}" if state_file else ""))


def _start_time(text: str) -> datetime:
    from meta_tokenvault.errors import InvalidInput

    if text == "now":
        return datetime.now(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--start {text!r} is not an ISO-8601 time or 'now'.",
                           hint="For example --start 2026-01-01T00:00:00+00:00") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
