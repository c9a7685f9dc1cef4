-- Tenants: the owners of keys. Ids are `tnt_` + a ULID (CONTRACT §1); the "C"
-- collation makes text order byte order, which for ULIDs is creation order.
CREATE TABLE tenants (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY
        CONSTRAINT tenants_id_format CHECK (id ~ '^tnt_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    name TEXT NOT NULL
        CONSTRAINT tenants_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at TIMESTAMPTZ NOT NULL
);

-- `find_tenant_by_name`: the oldest tenant of a name.
CREATE INDEX tenants_name_created_at_idx ON tenants (name, created_at, id);
