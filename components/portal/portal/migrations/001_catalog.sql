-- The unified service model (CPSV-AP): public organisations, public services, citizen feedback.

-- Arabic/English search normalisation; mirrors portal.text.normalize (alef/hamza forms, taa marbuta,
-- alef maqsura, tatweel and diacritics).
CREATE FUNCTION portal_normalize(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
  SELECT regexp_replace(translate(lower(t), 'أإآٱةى', 'ااااهي'), '[\u0640\u064B-\u065F\u0670]', '', 'g')
$$;

-- word variants without the definite article (ال and و/ف/ب/ك/ل + ال), so "جواز" finds "الجواز"
CREATE FUNCTION portal_search_words(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
  SELECT portal_normalize(t) || ' ' ||
         regexp_replace(portal_normalize(t), '(^|[\s(«"،])[وفبكل]?ال(\S{2,})', '\1\2', 'g')
$$;

CREATE TABLE bodies (
  id text PRIMARY KEY,
  type text NOT NULL CHECK (type IN ('ministry', 'agency', 'authority')),
  name_en text NOT NULL,
  name_ar text NOT NULL,
  parent_id text REFERENCES bodies (id)
);

CREATE TABLE services (
  id text PRIMARY KEY,
  body_id text NOT NULL REFERENCES bodies (id),
  status text NOT NULL CHECK (status IN ('draft', 'published', 'withdrawn')),
  name_en text NOT NULL CHECK (length(name_en) BETWEEN 2 AND 300),
  name_ar text NOT NULL CHECK (length(name_ar) BETWEEN 2 AND 300),
  description_en text NOT NULL,
  description_ar text NOT NULL,
  category text NOT NULL,
  life_events text[] NOT NULL DEFAULT '{}',
  channels text[] NOT NULL CHECK (channels <@ ARRAY['online', 'office', 'phone'] AND cardinality(channels) > 0),
  fee_syp bigint NOT NULL CHECK (fee_syp >= 0),
  fee_legal_basis_en text NOT NULL DEFAULT '',
  fee_legal_basis_ar text NOT NULL DEFAULT '',
  payment_channels text[] NOT NULL DEFAULT '{}' CHECK (payment_channels <@ ARRAY['cash', 'bank', 'epayment']),
  processing_time text NOT NULL CHECK (processing_time ~ '^P(\d+D|T\d+H|\d+DT\d+H)$'),
  processing_hours integer NOT NULL CHECK (processing_hours >= 0),
  requirements jsonb NOT NULL DEFAULT '[]',
  steps jsonb NOT NULL DEFAULT '[]',
  contact jsonb NOT NULL DEFAULT '{}',
  legal_resources jsonb NOT NULL DEFAULT '[]',
  documents_text text NOT NULL DEFAULT '',
  keywords_text text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- names only: small enough to stay inline, so ranking the matches never detoasts the full vector
  name_search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', portal_search_words(name_ar || ' ' || name_en)) || to_tsvector('english', name_en)
  ) STORED,
  -- everything searchable: names (A), descriptions and category/life-event labels (B), documents (C)
  search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', portal_search_words(name_ar || ' ' || name_en)), 'A') ||
    setweight(to_tsvector('english', name_en), 'A') ||
    setweight(to_tsvector('simple', portal_search_words(description_ar || ' ' || description_en)), 'B') ||
    setweight(to_tsvector('english', description_en), 'B') ||
    setweight(to_tsvector('simple', portal_search_words(keywords_text)), 'B') ||
    setweight(to_tsvector('english', keywords_text), 'B') ||
    setweight(to_tsvector('simple', portal_search_words(documents_text)), 'C') ||
    setweight(to_tsvector('english', documents_text), 'C')
  ) STORED
);
CREATE INDEX services_search ON services USING gin (search);
CREATE INDEX services_body_status ON services (body_id, status);
CREATE INDEX services_status_name ON services (status, name_en);
CREATE INDEX services_channels ON services USING gin (channels);

CREATE TABLE feedback (
  id bigserial PRIMARY KEY,
  service_id text NOT NULL REFERENCES services (id),
  kind text NOT NULL CHECK (kind IN ('useful', 'wrong_information')),
  useful boolean,
  field text,
  text text NOT NULL DEFAULT '' CHECK (length(text) <= 2000),
  status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'accepted', 'rejected', 'resolved')),
  moderator_note text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  moderated_at timestamptz,
  CHECK ((kind = 'useful' AND useful IS NOT NULL AND field IS NULL)
         OR (kind = 'wrong_information' AND useful IS NULL AND field IS NOT NULL))
);
CREATE INDEX feedback_service ON feedback (service_id);
CREATE INDEX feedback_status ON feedback (status, id);

-- one row once the catalog is seeded: what was generated, so a re-run is a no-op
CREATE TABLE catalog_seed (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  generator_version text NOT NULL,
  seed bigint NOT NULL,
  digest text NOT NULL,
  services integer NOT NULL,
  published integer NOT NULL,
  bodies integer NOT NULL,
  seeded_at timestamptz NOT NULL DEFAULT now()
);
