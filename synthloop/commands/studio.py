"""`synthloop studio [DIR]`: the local web app (spec designer, learn from a table, refine, runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthloop.commands._common import out


def register(app: typer.Typer) -> None:
    """Add `studio` to the app."""

    @app.command()
    def studio(
        folder: Path = typer.Argument(Path("."), metavar="DIR", help="Folder the studio reads and writes (specs, uploads, models, runs)."),
        port: int = typer.Option(8765, "--port", help="TCP port (0: any free port)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback exposes the studio "
                                 "to the network and needs a token (--token, or one is made and printed)."),
        token: Optional[str] = typer.Option(None, "--token", help="Token every API call must carry (off loopback: "
                                            "default a random one, printed in the URL)."),
        workers: int = typer.Option(1, "--workers", min=1, help="Background jobs (fit, sample, generate, refine) run at once."),
    ) -> None:
        """Start the studio and print its URL; Ctrl-C stops it (running jobs are cancelled)."""
        import secrets
        import socket

        import uvicorn

        from synthloop.studio.app import create_app, is_loopback

        if not is_loopback(host) and not token:
            token = secrets.token_urlsafe(24)
        application = create_app(folder, token=token, host=host, workers=workers)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{sock.getsockname()[1]}/"
        out.print(f"synthloop studio on {folder.resolve()}")
        out.print(f"open {url}" + (f"#token={token}" if token else ""))
        if not is_loopback(host):
            out.print(f"bound to {host}: anyone who can reach this machine can connect; the page asks for the token")
        config = uvicorn.Config(application, log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
