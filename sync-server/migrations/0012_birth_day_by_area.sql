-- The residents' index by day of birth puts the area before the day: (year, area, day). Under
-- (year, day, area) a commune's residents fell on random leaves of a province's index (the
-- day is a keyed hash), and a commune's first push wrote some 37,000 of them; under (year,
-- area, day) they fall on one run of leaves a year of birth. The turning-14 lookup still
-- seeks by year and area, and filters the window's days within the index (issue 14).
CREATE INDEX IF NOT EXISTS person_by_birth_area ON person (birth_year, area, dob);
DROP INDEX IF EXISTS person_by_birth_day;
