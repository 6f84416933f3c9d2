"""A local web app to try a model on your photos: drop a photo, get its depth in colour, a slider
comparing it with the photo, a 3D view of the coloured mesh, and the files (.npy, .ply, .glb).

It needs Gradio (``pip install 'svde[demo]'``). The model dropdown offers the released models whose
weights are in torch.hub's cache (usable offline), the ``--model NAME`` given (downloaded on
first use, as ``svde predict --model NAME``), and the ``--checkpoint`` or ``--official`` file
given. Offline without any weights it still starts and says what to do. It serves on
127.0.0.1 (this machine only) unless ``--host`` says otherwise (``--host 0.0.0.0``: every network
interface; anyone who can reach the port can use it). Gradio's usage analytics and version
check are off (``GRADIO_ANALYTICS_ENABLED=False``) and the page uses system fonts: nothing leaves
the machine. The ``.npy`` it gives is exactly ``svde predict``'s for the same file
(docs/demo.md).

Examples:
    svde demo --model b5_lrn4                       # then open http://127.0.0.1:7860
    svde demo --checkpoint runs/quickstart/best.pt --port 8080
    python scripts/demo.py --model mn_lrn4 --host 0.0.0.0 --device cuda
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from svde.cli.common import (
    add_debug_argument,
    add_model_arguments,
    add_threads_argument,
    apply_threads,
    check_camera,
    check_model_arguments,
    command_parser,
)
from svde.device import resolve_device
from svde.errors import UserError
from svde.preprocess import EVAL_SHORT_SIDE

DEFAULT_PORT = 7860


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """Parse and check the arguments (no model is required: without one the app says what to do)."""
    p = command_parser(__doc__, prog)
    add_model_arguments(p, released=True)
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="port to serve on; 0: any free one (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; 0.0.0.0 serves every interface (default: %(default)s, this machine only)")
    p.add_argument("--fov", type=float, default=60.0,
                   help="the mesh's horizontal field of view in degrees, changeable in the page (default: %(default)s)")
    p.add_argument("--short-side", type=int, default=EVAL_SHORT_SIDE,
                   help="the network's shorter side, as svde predict; 0: native size (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto, cuda if available)")
    add_threads_argument(p)
    add_debug_argument(p)
    args = p.parse_args(argv)
    if args.model is not None or args.checkpoint is not None or args.official is not None:
        check_model_arguments(p, args, released=True)
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be in 0..65535, got {args.port}")
    if args.short_side < 0:
        p.error(f"--short-side must be >= 0, got {args.short_side}")
    check_camera(fov=args.fov)
    return args


def choices(args: argparse.Namespace) -> list:
    """The model dropdown: the file given first, then ``--model NAME``, then the cached released models."""
    from svde.cli.demo_app import Choice, cached_released

    found = []
    if args.checkpoint is not None:
        found.append(Choice(f"checkpoint: {args.checkpoint}", str(args.checkpoint)))
    if args.official is not None:
        found.append(Choice(f"{args.model} (file: {args.official})", str(args.official), args.model))
    if args.model is not None and args.official is None:
        found.append(Choice(f"{args.model} (released)", args.model))
    found += [Choice(f"{name} (released)", name) for name in cached_released() if name != args.model]
    return found


def free_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` (0: a free one); a one-line error otherwise."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UserError(f"--host {host} --port {port}: cannot serve there ({exc.strerror or exc}); "
                            f"give another --port (0: any free one)") from None
        return s.getsockname()[1]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Serve the demo until Ctrl-C."""
    args = parse_args(argv, prog)
    apply_threads(args.threads)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no analytics, no version check
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own requests to itself, one line each
    try:  # both now: trimesh (the 3D view) would otherwise be missed after the first prediction
        import gradio  # noqa: F401
        import trimesh  # noqa: F401
    except ImportError as exc:
        raise UserError(f"svde demo needs Gradio and trimesh ({exc.name} is missing): pip install 'svde[demo]' "
                        "(or pip install gradio trimesh)") from None
    from svde.cli.demo_app import DemoBackend, build_app, no_weights_message, offline_theme

    device = str(resolve_device(args.device))
    port = free_port(args.host, args.port)
    backend = DemoBackend(choices(args), device=device, short_side=args.short_side or None)
    status = ""
    if not backend.choices:
        status = no_weights_message()
    else:
        try:  # the first model now: a missing download is said at once, in the page and here
            backend.model(backend.labels[0])
        except Exception as exc:  # noqa: BLE001 - the app still starts and shows it
            if isinstance(exc, KeyboardInterrupt):
                raise
            status = f"{backend.labels[0]}: {exc}\n\n{no_weights_message()}"
    if status:
        print(f"warning: {status}", file=sys.stderr)
    app = build_app(backend, status=f"**{status}**" if status else "", fov=args.fov)
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"svde demo: http://{url_host}:{port} ({', '.join(backend.labels) or 'no model'}; Ctrl-C stops it)",
          flush=True)
    try:
        app.launch(server_name=args.host, server_port=port, share=False, inbrowser=False, show_error=True,
                   ssr_mode=False, mcp_server=False, theme=offline_theme(), quiet=True,
                   allowed_paths=[str(backend.workdir)])
    finally:
        backend.close()
    return 0
