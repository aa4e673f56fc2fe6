"""``python -m ca [serve|bootstrap|maintain|export-root]``; ``serve`` (the default) migrates first."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca.settings")
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)  # the shared cache (ACME nonces, CRLs): idempotent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ca")
    parser.add_argument("command", nargs="?", default="serve",
                        choices=["serve", "bootstrap", "maintain", "export-root", "backup-dump", "backup-restore",
                                 "backup-verify"])
    parser.add_argument("--serial", action="append", help="backup-verify: also check this certificate's OCSP")
    parser.add_argument("--out", help="export-root: write the PKCS#12 file here (default: stdout)")
    args = parser.parse_args(argv)

    if args.command in ("backup-dump", "export-root") and not args.out:
        import logging

        logging.basicConfig(stream=sys.stderr, level="WARNING")  # stdout carries the data
    else:
        from govcloud_common.logs import configure

        configure("ca")
    _django()
    if args.command == "serve":
        import uvicorn
        from govcloud_common.settings import Settings

        migrate()
        workers = int(Settings.setting("workers", "1"))
        uvicorn.run("ca.asgi:app", host=Settings.from_env().bind, port=Settings.port("http", 18030),
                    workers=workers, log_config=None, access_log=False)
        return 0

    from ca import hierarchy

    if args.command == "bootstrap":
        migrate()
        print(json.dumps({"hierarchy": hierarchy.ensure_hierarchy()}))
    elif args.command == "maintain":
        print(json.dumps(hierarchy.maintain()))
    elif args.command == "backup-dump":
        from ca import backup

        backup.dump()
    elif args.command == "backup-restore":
        from ca import backup

        migrate()
        print(json.dumps(backup.restore()))
    elif args.command == "backup-verify":
        from ca import backup

        doc = backup.verify(args.serial)
        print(json.dumps(doc))
        return 0 if doc["ok"] else 1
    elif args.command == "export-root":
        data = hierarchy.export_root(hierarchy.export_passphrase())
        if args.out:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        else:
            sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
