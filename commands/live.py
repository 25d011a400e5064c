"""``ace serve``, ``ace live``, ``ace stop``, ``ace streams``: the live commands.

``ace serve`` starts a Ray head node with its dashboard (or joins ``--address`` / ``RAY_ADDRESS``)
and the detached controller and ramp actors, writes the cluster's address to ``DATA_DIR/ray.address`` so the
other commands find it, and stays in the foreground until Ctrl-C (then it stops the streams and
the Ray node it started); ``--detach`` returns at once and leaves them running
(``ace serve --shutdown`` stops them later, and only that node's processes, not every Ray on the machine).

The head it starts listens on loopback only (``--node-ip-address 127.0.0.1``, in Ray's single-machine
mode: see :mod:`workers.cluster`); another ``--node-ip-address`` lets worker nodes join, and makes
Ray listen on the network, which it warns about.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ace.errors import AceError
from ace.console import say

err = Console(stderr=True)
out = Console()


def _address_file(data_dir: Path) -> Path:
    return Path(data_dir).absolute() / "ray.address"


def _ray_cli() -> str:
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else "ray"


def _settings(args):
    from commands.common import settings_from

    return settings_from(args)


def _connect(args, settings) -> str:
    """Join the running cluster: --address, RAY_ADDRESS, or the one `ace serve` wrote down."""
    from workers.cluster import init_ray

    address = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS")
    if not address:
        f = _address_file(settings.data_dir)
        if not f.is_file():
            raise SystemExit("ace: no ACE cluster is running here; start one with `ace serve` (or give --address)")
        address = f.read_text().split()[0]
    try:
        init_ray(address=address, data_dir=settings.data_dir)
    except Exception as e:
        raise SystemExit(f"ace: cannot reach the Ray cluster at {address} ({type(e).__name__}: {e}); is `ace serve` running?") from None
    return address


def _controller():
    from workers.controller import get_controller

    try:
        return get_controller(create=False)
    except ValueError:
        raise SystemExit("ace: the cluster has no ACE controller; start it with `ace serve`") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from workers.cluster import (
        RAY_LOCAL_ONLY_ENV,
        address_host,
        is_loopback_host,
        loopback_address,
        ray_temp_dir,
    )

    settings = _settings(args)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    addr_file = _address_file(settings.data_dir)
    if args.shutdown:
        return _shutdown(args, settings)
    address = args.address or os.environ.get("RAY_ADDRESS")
    started = False
    if not address:
        node_ip = args.node_ip_address
        if is_loopback_host(node_ip):
            address = loopback_address(args.port)  # and this process, `ray start` and its children in loopback mode
            env = dict(os.environ)
        else:  # multi-node, asked for: Ray's own choice of bind addresses
            env = {k: v for k, v in os.environ.items() if k != RAY_LOCAL_ONLY_ENV}
            address = f"[{node_ip}]:{args.port}" if ":" in node_ip else f"{node_ip}:{args.port}"
            _warn_network(address)
        if not is_loopback_host(args.host):
            err.print(f"[yellow]warning[/] the Ray dashboard listens on {escape(args.host)}: whoever reaches it can submit jobs, "
                      f"that is run code, on this cluster (token authentication only when RAY_AUTH_MODE=token)")
        temp = ray_temp_dir(Path(settings.data_dir))
        Path(temp).mkdir(parents=True, exist_ok=True)
        cmd = [_ray_cli(), "start", "--head", "--node-ip-address", address_host(address), "--port", str(args.port),
               "--temp-dir", temp, "--include-dashboard", "true", "--dashboard-host", args.host,
               "--dashboard-port", str(args.dashboard_port), "--disable-usage-stats"]
        if args.num_cpus:
            cmd += ["--num-cpus", str(args.num_cpus)]
        err.print("[dim]starting Ray ...")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            err.print(f"[red]error[/] Ray did not start:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            return 1
        started = True
    import ray

    from workers.cluster import init_ray
    from workers.controller import get_controller
    from workers.ramp import get_ramp, ramp_sink_spec

    ctx = init_ray(address=address, data_dir=settings.data_dir)
    from workers.cluster import actor_settings

    controller = get_controller(create=True, settings=actor_settings(settings))
    ray.get(controller.streams.remote())  # it answers: ready
    get_ramp(actor_settings(settings))
    office = None
    if not args.no_api:
        from workers.serve import start_back_office

        host = args.api_host or settings.api_host
        port = args.api_port or settings.api_port
        try:
            office = start_back_office(actor_settings(settings), host, port)
        except Exception as e:  # noqa: BLE001 - the live pipeline still serves; say why the office does not
            err.print(f"[red]error[/] the back office did not start on {host}:{port}: {type(e).__name__}: {e}")
    addr_file.parent.mkdir(parents=True, exist_ok=True)
    # the address for the other commands; "started": `ace serve --shutdown` ends the node, found by its session folder
    session = getattr(ctx, "address_info", {}).get("session_dir") if started else None
    addr_file.write_text(address + ("\nstarted\n" + (f"session {session}\n" if session else "") if started else "\n"))
    dash = f"http://{args.host}:{args.dashboard_port}" if started else "the joined cluster's own dashboard"
    out.print(f"ACE is serving on Ray at {escape(address)}\n  dashboard:  {dash}\n  controller: ace:controller (namespace ace)\n"
              f"  ramp:       ace:ramp, deciding every {settings.ramp_tick_s:g} s -> {ramp_sink_spec(settings)}\n"
              f"  back office: {office + '  (API docs: ' + office + '/docs; sign in with `ace tokens create --tenant NAME`)' if office else 'not started'}\n"
              f"  submit:     ace live URL [--events FILE]\n  stop:       ace stop ID")
    if args.detach:
        return 0
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        err.print("stopping ...")
    return _shutdown(args, settings)


def _warn_network(address: str) -> None:
    """The head is to listen on the network (``--node-ip-address`` not loopback): say what that opens."""
    auth = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    err.print("[yellow]warning[/] the Ray head's address is not loopback: Ray listens on the network, most of its "
              "ports on all interfaces (GCS, raylet, object manager, workers, dashboard agent, metrics, Ray Client 10001), "
              f"so that worker nodes can join with `ray start --address {escape(address)}`. "
              + ("Token authentication is on (RAY_AUTH_MODE=token); keep these ports on a private network or behind a firewall."
                 if auth else
                 "Token authentication is OFF: anyone who reaches these ports can run code on this machine. Set "
                 "RAY_AUTH_MODE=token (the same token on every node) and keep the ports on a private network or behind a firewall."),
              markup=True, highlight=False, soft_wrap=False)


def _shutdown(args, settings) -> int:
    import ray

    addr_file = _address_file(settings.data_dir)
    lines = addr_file.read_text().splitlines() if addr_file.is_file() else []
    started = "started" in lines
    session = next((x.split(" ", 1)[1] for x in lines if x.startswith("session ")), None)
    try:
        if not ray.is_initialized():
            _connect(args, settings)
        controller = _controller()
        try:
            ray.get(controller.shutdown_streams.remote(), timeout=120)  # every tenant's
        except Exception as e:  # noqa: BLE001 - shutting down anyway
            err.print(f"[yellow]warning[/] stopping the streams: {e}")
        ray.kill(controller)
        from workers.serve import stop_back_office

        stop_back_office()
        from workers.speech_pool import kill_speech_pool

        kill_speech_pool()
        try:
            from workers.ramp import get_ramp

            ramp = get_ramp(create=False)
            ray.get(ramp.stop.remote(), timeout=30)  # closes the decision sink
            ray.kill(ramp)
        except ValueError:  # no ramp actor
            pass
    except SystemExit as e:
        err.print(f"[yellow]{e}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if started and session:
        from workers.cluster import stop_ray_node

        stop_ray_node(session, gcs_address=lines[0].strip())
    elif started:  # written by an older ACE: every Ray process on the machine, as before
        subprocess.run([_ray_cli(), "stop"], capture_output=True)
    addr_file.unlink(missing_ok=True)
    err.print("ACE stopped")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    import ray

    settings = _settings(args)
    _connect(args, settings)
    # from here Ctrl-C, SIGTERM and SIGHUP end the command quietly (Ray's own SIGTERM handler dumps a native stack)
    _on_signals(_interrupt)
    catalogs = list(args.products or [])
    if len(catalogs) > len(args.urls) and len(catalogs) > 1:
        err.print("[red]error[/] more --products files than URLs (give one per URL in the same order, or one for all)")
        return 2
    from ace.products.catalog import load_products, product_to_dict

    try:  # read and checked before anything starts: a bad file names its line and field
        lists = [[product_to_dict(p) for p in load_products(f)] for f in catalogs]
    except AceError as e:
        err.print(f"[red]error[/] {escape(str(e))}")
        return 2
    controller = _controller()
    ids = []
    for i, url in enumerate(args.urls):
        events = args.events[i] if args.events and i < len(args.events) else None
        if events and "://" not in events:
            events = str(Path(events).absolute())
        products = lists[0] if len(lists) == 1 else lists[i] if i < len(lists) else []
        try:
            # the stream keeps its own clip shape even on a cluster started with other settings
            sid = ray.get(controller.submit.remote(url, name=args.name or "", events=events, products=products,
                                                   category=args.category, budget=args.budget,
                                                   clip_format=getattr(args, "clip_format", None),
                                                   burn_captions=getattr(args, "burn_captions", None)))
        except ray.exceptions.RayTaskError as e:
            err.print(f"[red]refused[/] {escape(url)}: {escape(str(e.cause if hasattr(e, 'cause') else e))}", soft_wrap=True)
            continue
        ids.append(sid)
        say(out, f"stream {sid}: {url}")
    if not ids:
        return 1
    if args.no_follow:
        return 0
    return follow(controller, ids, as_json=args.json)


#: what a follower stopped by Ctrl-C, SIGTERM or SIGHUP (or a closed stdout) says on stderr, once
DETACHED = "detached; the streams keep running (ace stop ID stops one)"
#: the signals that detach a follower, as Ctrl-C does
DETACH_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def follow(controller, ids: list[str], as_json: bool = False, poll_s: float = 1.0, get=None) -> int:
    """Print moments and clips as they appear until every stream has ended (0; 1 when one failed).

    Ctrl-C, SIGTERM and SIGHUP detach: the streams keep running, one line on stderr says so and the
    exit code is 0, as for a closed stdout (``ace live URL | head``). ``get`` answers the controller's
    calls (default ``ray.get``). While it waits in ``ray.get`` a signal reaches Python only through
    Ray's signal check, which passes KeyboardInterrupt on and holds any other exception until the
    call returns; and Ray's core worker replaces the SIGTERM handler with one that prints a native
    stack ("*** SIGTERM received ...") and aborts on the way out. So the handlers are installed
    here, after Ray has started, and each raises KeyboardInterrupt."""
    if get is None:
        import ray

        get = ray.get
    seen: set[str] = set()
    last: dict[str, str] = {}
    previous = _on_signals(_interrupt)
    detached = False
    try:
        while True:
            final = 0
            for sid in ids:
                st = get(controller.status.remote(sid))
                if st["status"] != last.get(sid):
                    last[sid] = st["status"]
                    msg = f"{sid}: {st['status']}" + (f" ({st['error'].splitlines()[0]})" if st.get("error") else "")
                    print(json.dumps({"stream": sid, "status": st["status"], "error": st.get("error", "")}) if as_json else msg, flush=True)
                clips = {c["moment_id"]: c for c in get(controller.clips.remote(sid))}
                for m in get(controller.moments.remote(sid)):
                    if m["id"] in seen or m["id"] not in clips:
                        continue
                    seen.add(m["id"])
                    c = clips[m["id"]]
                    if as_json:
                        print(json.dumps({"stream": sid, "moment": m, "clip": c}), flush=True)
                    else:
                        why = ", ".join(r["source"] for r in m.get("reasons", []))
                        print(f"{sid}: moment {m['start']:.1f}-{m['end']:.1f} s score {m['score']:.2f} ({why}) -> {c['path']}", flush=True)
                if st["status"] in ("ended", "failed", "stopped"):
                    final += 1
            if final == len(ids):
                return 0 if all(last[s] != "failed" for s in ids) else 1
            time.sleep(poll_s)
    except (KeyboardInterrupt, BrokenPipeError) as e:
        detached = True
        # a second signal while this process winds down (Ray's disconnect) ends it at once, as quietly
        _on_signals(_leave_now)
        if isinstance(e, BrokenPipeError):
            _stdout_to_devnull()
        _detach_message()
        return 0
    finally:
        if not detached:
            _restore_signals(previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # the one exception Ray's wait passes on at once


def _leave_now(signum, frame):
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def _on_signals(handler) -> dict:
    """Install ``handler`` for the detaching signals this platform has, except those ignored
    (``nohup`` ignores SIGHUP; a background job, SIGINT): their previous handlers."""
    import signal
    import threading

    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in DETACH_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        old = signal.getsignal(sig)
        if old == signal.SIG_IGN:
            continue
        signal.signal(sig, handler)
        previous[sig] = old
    return previous


def _restore_signals(previous: dict) -> None:
    import signal

    for sig, old in previous.items():
        signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _stdout_to_devnull() -> None:
    """stdout's reader has gone: nothing more goes there (nor does Python's last flush complain)."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def _detach_message() -> None:
    try:
        sys.stderr.write(DETACHED + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # the terminal has gone (SIGHUP)
        pass


def cmd_stop(args: argparse.Namespace) -> int:
    import ray

    settings = _settings(args)
    _connect(args, settings)
    controller = _controller()
    rc = 0
    for sid in args.ids:
        try:
            st = ray.get(controller.stop.remote(sid, tenant=args.tenant))
            say(out, f"{sid}: {st['status']}")
        except ray.exceptions.RayTaskError as e:
            # another tenant's stream answers as unknown, like one that does not exist
            if isinstance(e, KeyError) or isinstance(getattr(e, "cause", None), KeyError):
                err.print(f"[red]error[/] no stream {escape(repr(sid))}", highlight=False, soft_wrap=True)
            else:
                err.print(f"[red]error[/] stopping {escape(repr(sid))}: {escape(str(getattr(e, 'cause', None) or e))}",
                          highlight=False, soft_wrap=True)
            rc = 1
    return rc


def cmd_streams(args: argparse.Namespace) -> int:
    import ray

    settings = _settings(args)
    _connect(args, settings)
    controller = _controller()
    rows = ray.get(controller.status.remote(tenant=args.tenant))
    for r in rows:
        try:
            ramp = ray.get(controller.ramp.remote(r["id"], tenant=args.tenant, limit=1), timeout=10)
            r["ramp_level"], r["ramp_share"] = ramp["level"], ramp["share"]
        except Exception:  # noqa: BLE001 - the listing still shows the stream
            r["ramp_level"] = r["ramp_share"] = None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    streams_table(rows).print(out)
    return 0


def streams_table(rows: list[dict]):
    """``ace streams``' table of the controller's status rows (ids always whole: :mod:`ace.console`)."""
    from ace.console import Col, IdTable

    t = IdTable("live streams", [Col("id", id=True), Col("status", min_width=7), Col("analysed s", justify="right"),
                                 Col("lag s", justify="right"), Col("moments", justify="right"), Col("clips", justify="right"),
                                 Col("clip p95 s", justify="right"), Col("reconnects", justify="right"), "ramp",
                                 Col("error", min_width=24)])
    for r in rows:
        error = (r.get("error") or "").strip()
        t.add_row(r["id"], r.get("status") or "-", f"{r.get('analysed_until') or 0:.0f}", f"{r.get('lag_s') or 0:.1f}",
                  str(r.get("moments", "-")), str(r.get("clips", "-")), str(r.get("clip_latency_p95_s") or "-"),
                  str(r.get("reconnects", "-")),
                  f"{r['ramp_level']} {100 * (r.get('ramp_share') or 0):.1f}%" if r.get("ramp_level") else "-",
                  error.splitlines()[0][:60] if error else "")
    return t


_TENANT_HELP = ("the tenant whose streams to {what} (default: default); without it only tenant default's streams, "
                "those started with `ace live`, are {done}. The back office's streams belong to the tenant of the API token "
                "that started them")


def register(sub, add_common) -> None:
    s = sub.add_parser("serve", help="start (or join) a Ray cluster with its dashboard and the live-stream controller")
    s.add_argument("--host", default="127.0.0.1", help="Ray dashboard host (default 127.0.0.1; another address lets "
                   "whoever reaches it submit jobs)")
    s.add_argument("--port", type=int, default=6379, help="Ray head (GCS) port when starting one (default 6379)")
    s.add_argument("--node-ip-address", dest="node_ip_address", default="127.0.0.1", metavar="ADDR",
                   help="the head node's address (default 127.0.0.1: every Ray process listens on loopback only, "
                   "single machine). Another address lets worker nodes join (`ray start --address ADDR:PORT`) but makes "
                   "Ray listen on the network, mostly on all interfaces: protect it with RAY_AUTH_MODE=token and a "
                   "private network or firewall")
    s.add_argument("--dashboard-port", type=int, default=8265, dest="dashboard_port", help="Ray dashboard port (default 8265)")
    s.add_argument("--api-host", dest="api_host", help="back office host (default ACE_API_HOST or 127.0.0.1)")
    s.add_argument("--api-port", dest="api_port", type=int, help="back office port (default ACE_API_PORT or 8000)")
    s.add_argument("--no-api", dest="no_api", action="store_true", help="do not start the back office")
    s.add_argument("--detach", action="store_true", help="return once serving; `ace serve --shutdown` stops it")
    s.add_argument("--shutdown", action="store_true", help="stop every stream, the controller and the Ray node `ace serve` started")
    add_common(s)
    s.set_defaults(func=cmd_serve)

    lv = sub.add_parser("live", help="submit live streams to the controller and follow their moments and clips")
    lv.add_argument("urls", nargs="+", help="HLS/HTTP-FLV (http, https), RTMP, RTSP URLs, or a local file (played at real speed)")
    lv.add_argument("--events", action="append", help="JSONL events file being appended to, one per URL in order")
    lv.add_argument("--products", action="append", help="the stream's product list (JSON or JSON Lines: id, name, aliases, "
                    "price, sku, image): each product's pitch becomes a clip once it is over; one file for every URL, or "
                    "one per URL in order")
    lv.add_argument("--name", help="a name for the stream (its id starts with it)")
    lv.add_argument("--category", default="other", help="the room's category for the ramp policy's priors "
                    "(beauty, fashion, food, electronics, games, other)")
    lv.add_argument("--budget", type=float, help="promoted impressions the room may receive in total (default: no limit)")
    lv.add_argument("--no-follow", action="store_true", dest="no_follow", help="submit and return")
    lv.add_argument("--json", action="store_true", help="follow as JSON lines")
    add_common(lv)
    lv.set_defaults(func=cmd_live)

    st = sub.add_parser("stop", help="stop live streams by id")
    st.add_argument("ids", nargs="+")
    st.add_argument("--tenant", default="default", help=_TENANT_HELP.format(what="stop", done="stopped"))
    add_common(st)
    st.set_defaults(func=cmd_stop)

    ls = sub.add_parser("streams", help="list live streams with status, lag, moments and clips")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--tenant", default="default", help=_TENANT_HELP.format(what="list", done="listed"))
    add_common(ls)
    ls.set_defaults(func=cmd_streams)
