-- Residents turning 14 in the next 90 days are found by their days of birth (the window's
-- index tokens, one a day), not by their years: on a province's store a year holds some
-- 45,000 residents to open, the window's days about 11,000 (docs/PERFORMANCE.md, issue 16).
-- With the area after the day, one commune's page reads its own residents only. Nothing
-- reads the years' index any more.
CREATE INDEX IF NOT EXISTS person_by_dob ON person (dob, area);
DROP INDEX IF EXISTS person_by_birth_year;
