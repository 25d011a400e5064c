"""``ace tokens create|list|revoke``: API tokens for the back office (kept hashed in the store)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

err = Console(stderr=True)


def _store(args):
    from commands.common import settings_from
    from ace.store import Store

    store = Store.from_settings(settings_from(args))
    store.create_all()
    return store


def cmd_tokens(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        if args.action == "create":
            if not args.tenant:
                raise SystemExit("ace: tokens create needs --tenant NAME")
            try:
                tid, token = store.create_token(args.tenant, args.name or "")
            except ValueError as e:
                raise SystemExit(f"ace: {e}") from None
            if args.json:
                print(json.dumps({"id": tid, "tenant": args.tenant, "token": token}))
            else:
                err.print(f"token {tid} for tenant {args.tenant!r} (shown once; only its hash is kept):")
                print(token)
            return 0
        if args.action == "list":
            rows = store.list_tokens(args.tenant)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
                    print(f"{r['id']}  {r['tenant']:<20} {state:<10} {r['created_at']}  {r['name']}")
            return 0
        if not args.id:
            raise SystemExit("ace: tokens revoke needs the token id (see `ace tokens list`)")
        ok = store.revoke_token(args.id)
        (print if ok else err.print)(f"token {args.id} revoked" if ok else f"no active token {args.id!r}")
        return 0 if ok else 1
    finally:
        store.close()


def register(sub, add_common) -> None:
    t = sub.add_parser("tokens", help="create, list and revoke the back office's API tokens")
    t.add_argument("action", choices=["create", "list", "revoke"])
    t.add_argument("id", nargs="?", help="revoke: the token id")
    t.add_argument("--tenant", help="create: the tenant the token acts for; list: only this tenant's")
    t.add_argument("--name", help="create: a note to recognise the token by")
    t.add_argument("--json", action="store_true")
    add_common(t)
    t.set_defaults(func=cmd_tokens)
