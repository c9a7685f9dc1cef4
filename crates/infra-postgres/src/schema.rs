// @generated automatically by Diesel CLI.
//
// Written by hand to mirror `diesel print-schema` output exactly (the Diesel
// CLI is not installed where this was written); `diesel.toml` at the
// repository root points here, so `diesel migration run` regenerates it.

diesel::table! {
    api_keys (id) {
        id -> Text,
        tenant_id -> Text,
        hash -> Bytea,
        name -> Text,
        key_type -> Text,
        mode -> Text,
        prefix -> Text,
        last_four -> Text,
        scopes -> Array<Nullable<Text>>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        revokes_at -> Nullable<Timestamptz>,
        replaced_by -> Nullable<Text>,
        allowed_ips -> Nullable<Array<Nullable<Cidr>>>,
        allowed_origins -> Nullable<Array<Nullable<Text>>>,
        metadata -> Jsonb,
    }
}

diesel::table! {
    idempotency_records (tenant_id, caller_key_id, idempotency_key) {
        tenant_id -> Text,
        caller_key_id -> Text,
        idempotency_key -> Text,
        fingerprint -> Bytea,
        response -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    key_events (seq) {
        seq -> Int8,
        id -> Text,
        #[sql_name = "type"]
        event_type -> Text,
        created_at -> Timestamptz,
        tenant_id -> Text,
        key_id -> Nullable<Text>,
        mode -> Nullable<Text>,
        actor_type -> Text,
        actor_key_id -> Nullable<Text>,
        request_id -> Nullable<Text>,
        data -> Jsonb,
    }
}

diesel::table! {
    tenants (id) {
        id -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(idempotency_records -> tenants (tenant_id));
diesel::joinable!(key_events -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(api_keys, idempotency_records, key_events, tenants,);
