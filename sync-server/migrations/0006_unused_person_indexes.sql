-- The residents' index kept three lookups by keyed token of which nothing reads two: the
-- duplicate search goes through person_block, the console's search through the blind index.
-- Each was a random B-tree insert for every resident written (docs/PERFORMANCE.md, the import).
-- person_by_birth_year stays: the turning-14 list reads it.
DROP INDEX IF EXISTS person_by_cccd;
DROP INDEX IF EXISTS person_by_dob;
