"""What ``ppw sandbox`` does once its arguments are parsed: build the app, announce it, serve it."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from worker.sandbox.config import SandboxConfig
from worker.sandbox.faults import FaultError, parse_assignment
from worker.sandbox.server import create_app


def run_sandbox(
    *,
    host: str,
    port: int,
    seed: int | None,
    churn: float,
    token_lifetime: float,
    faults: list[str],
    client_id: str,
    client_secret: str,
    redirect_uris: list[str],
    max_page_size: int,
    log_level: str,
    echo: Callable[[str], None],
) -> None:
    """Serve a sandbox in the foreground until interrupted; ``ValueError`` for bad arguments.

    The client secret is printed on purpose: it is the sandbox's own throwaway credential, and
    the person starting it needs it to configure ``PPW_PP_CLIENT_SECRET``.
    """
    try:
        parsed = dict(parse_assignment(text) for text in faults)
    except FaultError as exc:
        raise ValueError(str(exc)) from None
    config = SandboxConfig(
        seed=seed,
        churn_per_minute=churn,
        token_lifetime=token_lifetime,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=tuple(redirect_uris),
        faults=parsed,
        max_page_size=max_page_size,
    )
    try:
        app = create_app(config)
    except FaultError as exc:
        raise ValueError(str(exc)) from None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else 40 ms per keep-alive call
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    base = f"http://{shown_host}:{port}"
    echo(f"PracticePanther sandbox on {base}  (seed={seed}, churn={churn}/min)")
    echo(f"  PPW_PP_BASE_URL={base}")
    echo(f"  PPW_PP_CLIENT_ID={client_id}")
    echo(f"  PPW_PP_CLIENT_SECRET={client_secret}")
    for uri in redirect_uris:
        echo(f"  PPW_PP_REDIRECT_URI={uri}")
    if parsed:
        echo("  faults: " + ", ".join(f"{k}={v}" for k, v in parsed.items()))
    echo("  controls: /_sandbox/faults /_sandbox/reset /_sandbox/requests /_sandbox/mutate")
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    server.run(sockets=[sock])
