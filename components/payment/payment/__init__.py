"""Payment gateway: fee and bill payment orders through the national switch, a double-entry ledger, receipts."""
