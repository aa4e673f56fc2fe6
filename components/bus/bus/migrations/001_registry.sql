-- Member registry: bodies, their systems, the services each system provides, and access rights.
CREATE TABLE bodies (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9]{1,20}$'),
    type        text NOT NULL,
    parent      text REFERENCES bodies(id),
    name_en     text NOT NULL,
    name_ar     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE systems (
    body        text NOT NULL REFERENCES bodies(id) ON DELETE CASCADE,
    code        text NOT NULL CHECK (code ~ '^[a-z][a-z0-9-]{0,40}$'),
    description text NOT NULL DEFAULT '',
    base_url    text,              -- where its provided services live (NULL: a client-only system)
    PRIMARY KEY (body, code)
);

CREATE TABLE services (
    body        text NOT NULL,
    system      text NOT NULL,
    code        text NOT NULL CHECK (code ~ '^[a-z][a-z0-9-]{0,40}$'),
    protocol    text NOT NULL CHECK (protocol IN ('rest', 'soap')),
    path        text NOT NULL DEFAULT '',   -- appended to the system's base_url
    description text,                        -- OpenAPI JSON (rest) or WSDL XML (soap)
    mapping     jsonb NOT NULL DEFAULT '{}', -- declarative conversion overrides
    timeout_ms  integer NOT NULL DEFAULT 10000 CHECK (timeout_ms BETWEEN 10 AND 300000),
    PRIMARY KEY (body, system, code),
    FOREIGN KEY (body, system) REFERENCES systems(body, code) ON DELETE CASCADE
);

CREATE TABLE access_rights (
    client_body    text NOT NULL,
    client_system  text NOT NULL,
    body           text NOT NULL,
    system         text NOT NULL,
    service        text NOT NULL,
    granted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_body, client_system, body, system, service),
    FOREIGN KEY (client_body, client_system) REFERENCES systems(body, code) ON DELETE CASCADE,
    FOREIGN KEY (body, system, service) REFERENCES services(body, system, code) ON DELETE CASCADE
);
