-- Which settlement file a reconciliation ran against: the switch's (fetched, signature checked) or one an operator
-- uploaded (govcloud payments reconcile --settlement FILE.csv), and that file's SHA-256.
ALTER TABLE reconciliations ADD COLUMN source text NOT NULL DEFAULT 'switch' CHECK (source IN ('switch', 'uploaded')),
    ADD COLUMN settlement_sha256 text;
