-- Every worker keeps the search in memory (portal.search_index); any write to the catalog tells them to reload.
-- Statement-level: one notification per statement (and PostgreSQL folds repeats within a transaction).
CREATE FUNCTION portal_catalog_changed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('portal_catalog', TG_TABLE_NAME);
  RETURN NULL;
END
$$;

CREATE TRIGGER services_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON services
  FOR EACH STATEMENT EXECUTE FUNCTION portal_catalog_changed();
CREATE TRIGGER bodies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bodies
  FOR EACH STATEMENT EXECUTE FUNCTION portal_catalog_changed();
