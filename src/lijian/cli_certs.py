"""``lijian certs``: the sequencer link's credentials (cluster/tls.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

certs_app = typer.Typer(no_args_is_help=True, help="The sequencer link's certificates")


@certs_app.command("new")
def certs_new(
    out: Annotated[Path, typer.Option(help="directory: ca/, sequencer/ and one per gateway")],
    names: Annotated[
        list[str] | None, typer.Argument(help="gateway names (default: gateway-1..N)")
    ] = None,
    gateways: Annotated[int, typer.Option(help="with no names: this many gateways")] = 2,
) -> None:
    """Make the link's CA, the sequencer's certificate and the gateways' (keys 0600).
    Run again with new names to add gateways to the same CA (OUT/ca is reused)."""
    from lijian.cluster.tls import GATEWAYS_MAX, TlsError, new_set

    if not names and not 1 <= gateways <= GATEWAYS_MAX:
        sys.stderr.write(f"lijian certs new: --gateways must be 1..{GATEWAYS_MAX}\n")
        raise typer.Exit(2)
    wanted = list(names or [f"gateway-{i}" for i in range(1, gateways + 1)])
    if len(set(wanted)) != len(wanted) or len(wanted) > GATEWAYS_MAX:
        sys.stderr.write(f"lijian certs new: 1..{GATEWAYS_MAX} distinct names\n")
        raise typer.Exit(2)
    try:
        made = new_set(out, wanted)
    except (TlsError, OSError) as exc:
        sys.stderr.write(f"lijian certs new: {exc}\n")
        raise typer.Exit(2) from None
    for d in made:
        console.print(f"{d}", highlight=False)
    console.print(
        f"sequencer: --tls-dir {out / 'sequencer'}; each gateway: --tls-dir {out}/<name>; "
        f"keep {out / 'ca'} (the CA's key) offline",
        highlight=False,
        soft_wrap=True,
    )
