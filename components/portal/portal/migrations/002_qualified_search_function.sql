-- pg_dump restores with an empty search_path: a function calling another unqualified cannot be used by the
-- restore's generated columns and indexes (found by the restore drill). Qualify the call.
CREATE OR REPLACE FUNCTION portal_search_words(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
  SELECT public.portal_normalize(t) || ' ' ||
         regexp_replace(public.portal_normalize(t), '(^|[\s(«"،])[وفبكل]?ال(\S{2,})', '\1\2', 'g')
$$;
