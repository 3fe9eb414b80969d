-- Devices: operator metadata searchable by tag, attributes the device reports itself,
-- gateways and their children, and who changed what through the API, and when.

-- Tag filters (metadata @> '{"site": "berlin"}') read this index, not the whole registry.
CREATE INDEX devices_metadata ON devices USING gin (metadata jsonb_path_ops);

ALTER TABLE devices
    -- What the device says about itself (agent version, model), apart from the operator's
    -- metadata; replaced whole by each report.
    ADD COLUMN attributes     jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN attributes_at  timestamptz,
    -- A gateway sends readings for the devices attached to it (gateway_key); a gateway is
    -- nobody's child.
    ADD COLUMN gateway        boolean NOT NULL DEFAULT false,
    ADD COLUMN gateway_key    integer REFERENCES devices ON DELETE SET NULL,
    ADD CONSTRAINT devices_gateway_no_parent CHECK (NOT (gateway AND gateway_key IS NOT NULL));

CREATE INDEX devices_gateway_key ON devices (gateway_key) WHERE gateway_key IS NOT NULL;

-- Every change through PATCH /v1/devices/{id}: the merge patch as applied, by which key.
CREATE TABLE device_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_key  integer NOT NULL REFERENCES devices ON DELETE CASCADE,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    -- The API key that made it; NULL for the bootstrap key (API_ADMIN_KEY).
    key_id      bigint REFERENCES api_keys,
    change      jsonb NOT NULL
);
CREATE INDEX device_changes_device ON device_changes (device_key, id);
