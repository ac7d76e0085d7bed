-- The store's generation marker (projectors/src/generation.rs): one row, beside the offsets, so a
-- dropped schema or a wiped database takes it with the data and the projection notices. An
-- existing store that already holds offsets is complete as it stands (it was written batch by
-- batch with its offsets); a new one is complete once it has caught up with the log.
CREATE TABLE projection_generation (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation text NOT NULL,
    complete   boolean NOT NULL,
    begun_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO projection_generation (generation, complete)
SELECT replace(gen_random_uuid()::text, '-', ''), EXISTS (SELECT 1 FROM projection_offsets);
