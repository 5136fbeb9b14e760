-- Residents turning 14 in the next 90 days are found by their days of birth (the window's
-- index tokens, one a day) under their years, not by their years alone: on a province's store
-- two years hold some 90,000 residents to read, the window's days about 11,000, and with the
-- area last one commune's page reads its own residents only (docs/PERFORMANCE.md, issue 16).
CREATE INDEX IF NOT EXISTS person_by_birth_day ON person (birth_year, dob, area);
DROP INDEX IF EXISTS person_by_birth_year;
