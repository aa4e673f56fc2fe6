"""Verify a receipt offline: ``python -m payment.verify_receipt receipt.json platform-root.pem``.

Needs nothing but the receipt (as served by ``GET /api/orders/{id}/receipt``) and the platform CA's root certificate;
prints the receipt's fields and exits 0 when the chain and the signature hold, else prints why and exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from payment.receipts import InvalidReceipt, verify_receipt


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    doc = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    try:
        fields = verify_receipt(doc, Path(argv[2]).read_text(encoding="utf-8"))
    except InvalidReceipt as exc:
        print(f"INVALID: {exc}")
        return 1
    print(json.dumps({"valid": True, "receipt": fields}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
