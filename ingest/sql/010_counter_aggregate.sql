-- counter_resets(first, last, resets ORDER BY time): what a monotonic counter lost at its
-- resets, over consecutive parts of a series (raw readings: first = last = value, resets
-- = 0; rollup rows: their own first, last and resets). A part starting below the last
-- value before it is a reset (as in Prometheus), and adds that last value. So the increase
-- over the parts is last - first + counter_resets(...), and a rollup keeps the sum so that
-- coarser rollups and readers can combine rows without the raw readings.

CREATE FUNCTION counter_resets_step(state float8[], f float8, l float8, r float8)
RETURNS float8[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF state IS NULL THEN
        RETURN ARRAY[l, r];
    END IF;
    IF f < state[1] THEN
        RETURN ARRAY[l, state[2] + r + state[1]];
    END IF;
    RETURN ARRAY[l, state[2] + r];
END
$$;

CREATE FUNCTION counter_resets_final(state float8[]) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT coalesce(state[2], 0) $$;

CREATE AGGREGATE counter_resets(float8, float8, float8) (
    sfunc = counter_resets_step,
    stype = float8[],
    finalfunc = counter_resets_final
);
