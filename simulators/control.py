"""A loopback HTTP endpoint to drive a running simulator: list, start and stop scenarios.

Only ``facwatch simulate`` and ``facwatch demo`` open it, on ``simulation.control`` (127.0.0.1 by
default). It controls simulated hardware only and has no authentication, so it refuses to bind to
anything but a loopback address.

    GET  /scenarios               {"active": name|null, "clock_s": ..., "time_scale": ..., "scenarios": {...}}
    POST /scenarios/<name>/start  202, or 404 unknown / 409 another one runs
    POST /scenarios/stop          200
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from simulators.scenario import ScenarioRunner

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 5.0


class ControlServer:
    """Serves the control endpoint on a thread; actions run on the simulator's event loop."""

    def __init__(self, runner: ScenarioRunner, host: str, port: int, loop: asyncio.AbstractEventLoop):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the simulator control endpoint only binds to loopback, not {host}")
        self.runner = runner
        self.loop = loop
        self._http = ThreadingHTTPServer((host, port), _handler_for(self))
        self._thread = threading.Thread(target=self._http.serve_forever, name="sim-control", daemon=True)

    @property
    def address(self) -> str:
        """host:port actually bound."""
        host, port = self._http.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        """What the GET answers."""
        sim = self.runner.sim
        return {"active": self.runner.active, "clock_s": round(sim.plant.clock_s, 1), "time_scale": sim.time_scale,
                "scenarios": {name: s.description for name, s in sorted(self.runner.scenarios.items())}}

    def call(self, make_coro) -> Any:
        """Run a coroutine on the simulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(make_coro(), self.loop).result(CALL_TIMEOUT_S)


def _handler_for(server: ControlServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/scenarios":
                self._reply(HTTPStatus.OK, server.status())
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:
            parts = [p for p in self.path.split("/") if p]
            if parts == ["scenarios", "stop"]:
                server.call(server.runner.stop)
                self._reply(HTTPStatus.OK, {"stopped": True})
            elif len(parts) == 3 and parts[0] == "scenarios" and parts[2] == "start":
                self._start(parts[1])
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def _start(self, name: str) -> None:
            if name not in server.runner.scenarios:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"unknown scenario {name!r}"})
                return

            async def start() -> None:
                server.runner.start(name)
            try:
                server.call(start)
            except ValueError as exc:
                self._reply(HTTPStatus.CONFLICT, {"error": str(exc)})
                return
            self._reply(HTTPStatus.ACCEPTED, {"started": name})

        def _reply(self, status: HTTPStatus, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("control: " + format, *args)

    return Handler
