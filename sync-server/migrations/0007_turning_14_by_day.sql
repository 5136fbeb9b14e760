-- Residents turning 14 in the next 90 days: the index of years of birth gains the area, so that
-- one commune's page reads its own residents born in the window's years only, not a province's
-- (docs/PERFORMANCE.md, issue 16); the window's days (index tokens) are checked before anything
-- is opened. The year first keeps an import's inserts in a few dozen regions of the index.
CREATE INDEX IF NOT EXISTS person_by_birth_year_area ON person (birth_year, area);
DROP INDEX IF EXISTS person_by_birth_year;
